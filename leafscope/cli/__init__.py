"""Command-line interface: thin layers over the library API."""
