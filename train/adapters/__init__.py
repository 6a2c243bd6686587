"""PEFT adapters per domain: LoRA on the shared layers (`lora.py`) and frequency-band adapters on the decoder's
Fourier layers (`spectral.py`). The per-dataset input and output maps of the model are its dataset heads, not
adapters (`modeling_pdefm.head_layers.DatasetHead`)."""
