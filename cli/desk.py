"""`urbansense desk …`: set up the emergency desk console's users."""

from __future__ import annotations

from typing import Annotated

import typer

from service.desk.auth import hash_password


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="The emergency desk console (web page served by the service).\n\n"
                           "Example: [bold]urbansense desk hash-password wang[/bold]",
                      no_args_is_help=True, rich_markup_mode="rich")

    @sub.command("hash-password")
    def hash_password_(
        user: Annotated[str, typer.Argument(help="the user name the line is for")],
    ) -> None:
        """Ask for a password (twice) and print the config line that lets USER log in to the console.

        Example: [bold]urbansense desk hash-password wang[/bold] → paste the printed line under \\[desk.users].
        Only the salted argon2id hash is stored; the password itself is never written anywhere.
        """
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
        if len(password) < 10:
            typer.echo("error: use at least 10 characters", err=True)
            raise typer.Exit(2)
        typer.echo(f'{user} = "{hash_password(password)}"')

    app.add_typer(sub, name="desk")
