"""The Gradio demo over an export manifest (serve/app.py is the entry point)."""
