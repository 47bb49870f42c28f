"""Built-in explainer plugins of odirkit (Captum)."""
