"""Options of the trn code generation, part of inductor's cache key
(registered as the device's ``device_custom_config``), so graphs compiled
under different options never share a cached kernel module.
"""
import sys

from torch.utils._config_module import install_config_module  # noqa: E402

#: Set by ``backend="trn3"``: fold element-wise epilogues into the matmul
#: before them (one Tensor Engine kernel whose epilogue runs on the Scalar
#: Engine out of PSUM), as the Neuron compiler does.
neuron_fusion: bool = False

install_config_module(sys.modules[__name__])
