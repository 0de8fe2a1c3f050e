"""One module per `ovmllm` subcommand, imported lazily by `ovmllm.cli`."""
