"""tbfast.data"""
