"""The Well's baselines (CNextU-Net, U-Net, FNO): the networks, their forecasters, their training and the
benchmark document that sets them beside PDE-FM."""
