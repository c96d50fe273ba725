"""robojax: a JAX toolkit for robot learning on vectorised MuJoCo-MJX environments."""

__version__ = "0.1.0"
