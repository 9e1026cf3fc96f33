"""tbfast.kernels"""
