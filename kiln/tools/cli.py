"""The `kiln` command line (being written)."""


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("kiln: the command line is being written")
