"""Post-hoc calibration: temperature scaling (Guo et al. 2017; METHODS.md section 1), vector
scaling and isotonic regression.

Temperature scaling: one scalar ``T > 0`` divides the logits, ``p = softmax(z / T)``; it is
fitted on held-out logits by minimising the NLL.  It changes confidences but never the predicted
class, so accuracy is unchanged and the calibration metrics are reported before and after.

Every method is a :class:`Calibrator` in the :data:`CALIBRATORS` registry
(``auglabel calibrate RUN --method temperature|vector|isotonic``): ``fit(logits, labels)`` on the
clean validation split, ``calibrator(logits)`` -> calibrated logits, JSON state in the run
directory.  Fitting always sees the whole held-out set: under DDP the shards are gathered first
(:func:`fit_calibrator`), never fitted on one rank's shard.
"""
from .calibrators import CALIBRATORS, Calibrator, IsotonicCalibration, TemperatureScaling, VectorScaling
from .fit import (MAX_ABS_BIAS, MAX_SCALE, MAX_TEMPERATURE, MIN_SCALE, MIN_TEMPERATURE, PROBABILITY_FLOOR, STATE_FORMAT,
                  fit_temperature, fit_vector_scaling)
from .store import (calibrator_from_state, calibrator_path, fit_calibrator, gather_logits, load_calibrator,
                    save_calibrator)

__all__ = ["CALIBRATORS", "Calibrator", "IsotonicCalibration", "MAX_ABS_BIAS", "MAX_SCALE", "MAX_TEMPERATURE",
           "MIN_SCALE", "MIN_TEMPERATURE", "PROBABILITY_FLOOR", "STATE_FORMAT", "TemperatureScaling", "VectorScaling",
           "calibrator_from_state", "calibrator_path", "fit_calibrator", "fit_temperature", "fit_vector_scaling",
           "gather_logits", "load_calibrator", "save_calibrator"]
