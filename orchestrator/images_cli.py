"""`convertctl images`: the Docker images of the catalog."""
from __future__ import annotations

import typer

images_app = typer.Typer(no_args_is_help=True, help="Docker stage images.")
