"""Evaluating distilled sets the papers' way: students trained under a protocol and scored
(``evaluate``), DD-Ranking's scores (``ddranking``) and the shipped ``evaluate`` metrics (``metrics``)."""
