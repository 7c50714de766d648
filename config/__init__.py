"""Example configuration and access lists, installed as package data (edged.examples):
the demo reads its configuration here. Not imported for anything else."""
