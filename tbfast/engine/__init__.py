"""tbfast.engine"""
