"""Boards, plots and the HTML report, built from records alone."""
