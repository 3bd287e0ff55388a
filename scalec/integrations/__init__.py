"""Recipes for the trainers people use: `scalec.integrations.hf` (transformers' `Trainer`)."""
