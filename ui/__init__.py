"""The Gradio web app over ``rag.assistant.Assistant``; ``app.py`` is only its entry point.

``layout.build_ui(assistant)`` builds the page from one module per tab (``chat``, ``documents``, ``evaluation``).
``controller`` holds one browser session's state and the behaviour behind the handlers; ``render`` makes the HTML
(answers, source cards, cited-sentence highlighting) and imports no Gradio; ``i18n`` reads the English and Chinese UI
text from ``strings.json``; ``server`` tunes glibc's allocator, loads ``style.css`` and launches. The UI reaches the
core only through ``Assistant`` (and the dataclasses and errors it returns); the core never imports this package.
"""
