"""The Well and Mini-Well data as Hugging Face datasets (see the data issues)."""
