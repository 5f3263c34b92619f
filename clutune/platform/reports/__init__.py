"""Reports: statistics, plots, the HTML report, aggregates and the UI servers."""
