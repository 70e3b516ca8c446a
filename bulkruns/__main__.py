"""``python -m bulkruns``: the command line."""

from bulkruns.cli import main

if __name__ == "__main__":
    main(prog_name="bulkruns")
