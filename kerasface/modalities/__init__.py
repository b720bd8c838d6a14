"""Face modalities beyond the RGB image: photometric stereo (albedo, normal map, depth)."""
