"""RAPTOR (arXiv 2509.11481): one tiny recurrent student distilled from many SAC teachers."""
