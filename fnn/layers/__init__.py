"""The layers: every building block with its hand-written backward pass, one family a
module, and the networks built from them (`models`). Everything here is re-exported from
`fnn` itself.

Each module lists its public factories in its `__all__`, and this package exports exactly
those: a factory added to its module's `__all__` is exported here (and from `fnn`), and
the tests then ask for its catalogue item and its planted-bug test
(tests/check/test_planted_bugs.py). A new module is added to the imports below.
"""

from fnn.layers import activations as _activations
from fnn.layers import attention as _attention
from fnn.layers import combinators as _combinators
from fnn.layers import conv as _conv
from fnn.layers import dense as _dense
from fnn.layers import dropout as _dropout
from fnn.layers import embedding as _embedding
from fnn.layers import models as _models
from fnn.layers import normalization as _normalization
from fnn.layers import pooling as _pooling
from fnn.layers import reshape as _reshape
from fnn.layers.activations import *  # noqa: F403
from fnn.layers.attention import *  # noqa: F403
from fnn.layers.combinators import *  # noqa: F403
from fnn.layers.conv import *  # noqa: F403
from fnn.layers.dense import *  # noqa: F403
from fnn.layers.dropout import *  # noqa: F403
from fnn.layers.embedding import *  # noqa: F403
from fnn.layers.models import *  # noqa: F403
from fnn.layers.normalization import *  # noqa: F403
from fnn.layers.pooling import *  # noqa: F403
from fnn.layers.reshape import *  # noqa: F403

__all__: list[str] = []
__all__ += _activations.__all__
__all__ += _attention.__all__
__all__ += _combinators.__all__
__all__ += _conv.__all__
__all__ += _dense.__all__
__all__ += _dropout.__all__
__all__ += _embedding.__all__
__all__ += _models.__all__
__all__ += _normalization.__all__
__all__ += _pooling.__all__
__all__ += _reshape.__all__
