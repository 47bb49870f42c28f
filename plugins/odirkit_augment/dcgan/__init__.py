"""A DCGAN per class whose images join the training set (Thiry et al. 2021).

The standard DCGAN of Radford, Metz and Chintala (2016, "Unsupervised
Representation Learning with Deep Convolutional Generative Adversarial
Networks"): a generator from a 100-dimensional noise vector through
transposed convolutions (base width 64, batch norm) to a ``tanh`` image of
64x64, and a mirrored discriminator of strided convolutions with
LeakyReLU(0.2); Adam with lr 2e-4 and beta1 0.5; binary cross entropy. One
change, as in the paper: the generator's activations are LeakyReLU as well.
``real_label`` below 1 turns on one-sided label smoothing (Salimans et al.
2016, "Improved Techniques for Training GANs"), which helps a narrow GAN on
few images escape an all-winning discriminator; the default, 1, is the
standard DCGAN.

One GAN is trained per class, on that class's **training** images only — the
context an augmenter receives holds no held-out image — and its samples,
resized to the experiment's image size, join the training set with that
class's label. Each trained generator is saved under the run folder together
with its losses per epoch (CSV and plot), sample grids at chosen epochs (the
paper's Figure 1) and the list of images it learned from; it is also kept in
a cache shared by runs and reused when the same images and parameters come
again. A class with too few training images is skipped with a warning (in the
paper only N and D converged).

Caveat: on a CPU a DCGAN is slow; the defaults are the paper's, and the
quickstart uses a narrow, short one.

One job per module: ``networks`` (generator, discriminator), ``augmenter`` (the
augmenter: a GAN per class trained or reused, its samples; the factory), ``diagnostics``
(grids, loss plots, and whether a GAN converged).
"""

from odirkit_augment.dcgan.augmenter import (
    DCGAN,
    GAN_VERSION,
    build_dcgan,
    odirkit_register_augmenters,
)
from odirkit_augment.dcgan.diagnostics import (
    FLAT_SHARE,
    convergence_note,
    flatness_note,
    plot_losses,
    save_grid,
)
from odirkit_augment.dcgan.networks import (
    Z_DIM,
    Discriminator,
    Generator,
    init_weights,
    to_gan_range,
)

__all__ = [
    "DCGAN",
    "FLAT_SHARE",
    "GAN_VERSION",
    "Z_DIM",
    "Discriminator",
    "Generator",
    "build_dcgan",
    "convergence_note",
    "flatness_note",
    "init_weights",
    "odirkit_register_augmenters",
    "plot_losses",
    "save_grid",
    "to_gan_range",
]
