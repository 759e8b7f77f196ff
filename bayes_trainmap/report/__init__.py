"""Reports of a fit: the report data, its renderings (terminal, Markdown, HTML, JSON)
and the figures."""
