"""Pulumi entry point of the ml-mesh stack (`pulumi up -s dev`); see mesh/program.py."""

from mesh.program import main

main()
