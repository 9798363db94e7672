"""The joint section + NER model, registered with the transformers Auto classes on import."""
from model.modeling import JointConfig, JointModel, JointOutput  # noqa: F401
from model.vocab import train_wordpiece  # noqa: F401
from model.fast_dropout import enable_fast_dropout  # noqa: F401
