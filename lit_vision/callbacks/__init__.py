"""Lightning callbacks: adversarial training (and weight perturbation), validation and evaluation, the per-class report,
predictions for any images, submission writing, checkpointing and numerical-fault checks.
Configs name them by their full path, e.g.
`lit_vision.callbacks.adversarial_training.AdversarialTraining`, or, on the command line, by
class name: `--trainer.callbacks+=ClassReport`."""

from lit_vision.callbacks.adversarial_eval import AdversarialEvaluation
from lit_vision.callbacks.adversarial_training import AdversarialTraining
from lit_vision.callbacks.adversarial_validation import AdversarialValidation
from lit_vision.callbacks.class_report import ClassReport
from lit_vision.callbacks.image_predictions import ImagePredictions
from lit_vision.callbacks.submission import SubmissionWriter
from lit_vision.callbacks.weight_perturbation import AdversarialWeightPerturbation

__all__ = [
    "AdversarialEvaluation",
    "AdversarialTraining",
    "AdversarialValidation",
    "AdversarialWeightPerturbation",
    "ClassReport",
    "ImagePredictions",
    "SubmissionWriter",
]
