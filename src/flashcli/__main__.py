"""`python -m flashcli`: the CLI, as `accelerate launch -m flashcli learn ...` starts it in every process."""

from flashcli.cli import main
from flashcli.cli_ranks import quiet_other_ranks

if __name__ == "__main__":
    quiet_other_ranks()
    main()
