"""The docs build: regenerates every command output shown in README.md and docs/."""
