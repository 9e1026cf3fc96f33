"""tbfast.losses"""
