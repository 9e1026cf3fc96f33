"""tbfast.commands"""
