"""Figure definitions, one module per topic; each registers its figures in companion.figures."""
