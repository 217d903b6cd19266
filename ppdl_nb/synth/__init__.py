"""Differentially private synthetic data, and a measure of what synthetic data leaks."""
