"""`lossdoctor.keras.Doctor`: the live doctor for Keras 3 (needs `lossdoctor[keras]`)."""

from lossdoctor.integrations.keras import Doctor, StopTraining

__all__ = ["Doctor", "StopTraining"]
