"""Command-line entry points; each module's main(argv=None) returns the exit status."""
