"""Studies: coordinate checks, reports, sweeps, searches and transfer studies."""
