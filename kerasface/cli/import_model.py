"""Import an insightface arcface_torch face-recognition model as the kit's own .keras model.

    kerasface-import-model SRC --out MODEL.keras [--backbone NAME]

SRC: an ONNX export (arcface_torch's torch2onnx.py, insightface model zoo graphs such as
w600k_r50.onnx; batch norms folded or not) or a torch.save'd state dict (.pt / .pth, read without
torch; a file holding anything but tensors is refused unread). The backbone (iresnet18/34/50/100/
200, mobilefacenet) is recognised from the file's depth and widths; --backbone checks it. The
model records insightface's input: RGB, (x - 127.5) / 127.5, stretched to 112x112, faces aligned
to the ArcFace template. MODEL.keras is written only when every weight has mapped.
"""

import argparse
import sys
from pathlib import Path

from kerasface.cli.common import add_debug_argument, cli_main


@cli_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="arcface_torch .onnx graph or .pt state dict")
    parser.add_argument("--out", required=True, help=".keras file to write (must not exist)")
    parser.add_argument("--backbone", help="the backbone SRC must hold (default: recognised from SRC)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    from kerasface.errors import BadInputError
    from kerasface.fileio import atomic_path

    out = Path(args.out)
    if out.suffix != ".keras":
        raise BadInputError(f"{out}: --out must be a .keras file")
    if out.exists():
        raise FileExistsError(f"{out}: exists; choose another --out or remove it first")
    from kerasface.interop import import_with_layout

    model, layout = import_with_layout(args.src, args.backbone)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        model.save(tmp)
    options = "".join(f", {k}={v}" for k, v in layout.options)
    print(f"wrote {out}: {layout.backbone}{options}, {layout.input_size}x{layout.input_size} input, "
          f"{layout.embedding_dim}-d embedding, {model.count_params():,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
