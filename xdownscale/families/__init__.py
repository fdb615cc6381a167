"""Model families: one folder each, one ``FAMILY`` object each (:class:`~xdownscale.engine.contract.Family`).

* ``spatial``: one field in, one finer field out (``cnn``, ``espcn``, ``maunet``, baselines);
* ``temporal``: windows of consecutive steps (``convgru``, ``flowconvgru``);
* ``stochastic``: noise-driven generators and their ensembles (``gan``, ``rnngan``);
* ``diffusion``: conditional denoising diffusion (``diffusion``);
* ``implicit``: continuous-scale decoders (``liif``);
* ``distillation``: not a family but a recipe beside them (teachers -> student).

The registry names each model's family; :func:`xdownscale.fit` and
:func:`xdownscale.predict` resolve it by name (``models.family_of``), so importing this
package loads nothing. A new family is a new folder here with a ``FAMILY`` object, plus
``register_model(..., family="<folder>")`` for its models.
"""
