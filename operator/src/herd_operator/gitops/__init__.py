"""Git to cluster: fetch a revision, render it, diff, apply, prune, judge health."""
