"""`python -m lit_vision ...` is the same as the `lit-vision` console command."""

from lit_vision.cli import main

if __name__ == "__main__":
    main()
