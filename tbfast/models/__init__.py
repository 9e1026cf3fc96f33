"""tbfast.models"""
