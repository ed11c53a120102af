"""Teacher stage of PAW-ViT: part label maps for training images, cached by teacher id.

Public entry points: :func:`pseudomasks.settings.teacher_id`,
:func:`pseudomasks.fusion.fuse_part_map`, :func:`pseudomasks.fusion.mirror_map` and
:func:`pseudomasks.cache.load_part_maps`; the ``pseudomasks`` console script runs the rest.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("paw-reid")
except PackageNotFoundError:  # a source checkout that was never pip-installed
    __version__ = "0+unknown"
