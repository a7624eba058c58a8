"""The built-in synthetic galaxy source: simulated galaxies with known truth.

:func:`generate` writes, into ``out_dir``, exactly the layout of the Kaggle
Galaxy Zoo challenge::

    training_solutions_rev1.csv            GalaxyID, Class1.1 ... Class11.6, true_*
    images_training_rev1/<GalaxyID>.jpg    RGB JPEG, stamp_size x stamp_size

Images
------
Every galaxy is a sum of components drawn with GalSim in three bands (i, r, g
-> R, G, B): Sersic bulges/ellipticals, exponential (or edge-on
``InclinedExponential``) disks, bars; non-axisymmetric light (logarithmic
spiral arms, rings, tidal tails, star-forming clumps) is rendered on a
supersampled grid in the plane of the disk, projected, and convolved with the
same PSF (a Moffat).  Each component has its own colour (bulges red, arms and
clumps blue), the galaxy is scaled to a target optimal S/N against unit sky
noise, Gaussian sky noise is added per band and the bands are mapped to RGB
with an asinh stretch that mimics the SDSS JPEGs (dark, slightly noisy sky, a
few faint field stars).  All lengths are defined for a 160 px reference stamp
and scale with ``stamp_size``, so a stamp looks the same at every size; the
galaxy sits in the central half of the frame like the real images.

Truth and votes
---------------
Every galaxy is described by *latent* features (is a disk/structure visible,
edge-on-ness, bar, arm strength, pitch angle, number of arms, bulge fraction,
bulge shape, odd feature).  :func:`answer_path` turns latents into the answers
of the decision tree; applied to the true latents it gives ``true_answers``
(accepted by :meth:`gzmorph.tree.DecisionTree.ideal_votes`).  The volunteer
model (:func:`simulate_votes`) lets each simulated volunteer *perceive* the
latents -- attenuated and blurred by noise that grows as the galaxy gets
fainter and less resolved (its visibility), measured axis ratio instead of the
intrinsic one, occasional random answers -- and walk the tree with the same
:func:`answer_path`.  Faint or small galaxies thus get split, biased votes
(spiral -> smooth, bar missed, edge-on <-> cigar, odd features missed or
mislabelled); bright, large galaxies get confident, mostly correct votes.
The conditional fractions are converted to the Kaggle cumulative convention
with :meth:`~gzmorph.tree.DecisionTree.to_cumulative`.

Determinism: galaxy ``i`` is drawn from ``numpy.random.SeedSequence([seed,
i])`` alone, so the output does not depend on ``workers``.

Modules: :mod:`.morphology` (sampling a galaxy's kind and parameters),
:mod:`.components` (its light as GalSim profiles and grid patterns),
:mod:`.render` (PSF, S/N, measurements, noise, RGB stretch), :mod:`.truth`
(latents and decision-tree answers), :mod:`.volunteers` (simulated votes) and
:mod:`.catalogue` (:func:`generate`: the images and the catalogue on disk).
"""

from .catalogue import (
    CATALOGUE, DEFAULT_STAMP, ID_OFFSET, IMAGES, JPEG_QUALITY, MAX_STAMP, MIN_STAMP, TRUTH_COLUMNS, generate,
)
from .components import REF_STAMP
from .morphology import KIND_WEIGHTS, sample_galaxy
from .render import render_galaxy
from .truth import (
    BT_EDGEON_NONE, BT_EDGES, PITCH_LOOSE, PITCH_TIGHT, Q_CIGAR, Q_ROUND, answer_path, morphology_text, true_latents,
)
from .volunteers import LAPSE_RATE, ODD_HAPPY, simulate_votes, visibility

__all__ = [
    "CATALOGUE", "DEFAULT_STAMP", "ID_OFFSET", "IMAGES", "JPEG_QUALITY", "MAX_STAMP", "MIN_STAMP", "TRUTH_COLUMNS",
    "generate", "REF_STAMP", "KIND_WEIGHTS", "sample_galaxy", "render_galaxy", "BT_EDGEON_NONE", "BT_EDGES",
    "PITCH_LOOSE", "PITCH_TIGHT", "Q_CIGAR", "Q_ROUND", "answer_path", "morphology_text", "true_latents",
    "LAPSE_RATE", "ODD_HAPPY", "simulate_votes", "visibility",
]
