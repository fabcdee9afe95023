"""Unattended service"""
