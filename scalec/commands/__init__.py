"""CLI commands, one module per command (or command group), each defining `register(app: typer.Typer) -> None`.
`scalec.cli.COMMANDS` names the module of every command; a new command goes there too."""
