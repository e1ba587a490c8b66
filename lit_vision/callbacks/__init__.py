"""Lightning callbacks: adversarial training, validation and evaluation, submission writing,
checkpointing and numerical-fault checks. Configs name them by their full path, e.g.
`lit_vision.callbacks.adversarial_training.AdversarialTraining`."""

from lit_vision.callbacks.adversarial_eval import AdversarialEvaluation
from lit_vision.callbacks.adversarial_training import AdversarialTraining
from lit_vision.callbacks.adversarial_validation import AdversarialValidation
from lit_vision.callbacks.submission import SubmissionWriter

__all__ = ["AdversarialEvaluation", "AdversarialTraining", "AdversarialValidation", "SubmissionWriter"]
