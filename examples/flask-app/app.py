"""A Flask app as a function: its HTTP trigger serves it directly (the handler is the
WSGI application ``app``). Flask comes from requirements.txt, installed at deploy.

    curl -s http://127.0.0.1:9000/http/flask-app/
    curl -s -X POST http://127.0.0.1:9000/http/flask-app/notes -d 'buy milk'
    curl -s http://127.0.0.1:9000/http/flask-app/notes
"""

from flask import Flask, Response, request

app = Flask(__name__)
NOTES: list[str] = []  # module state: kept while the instance is warm


@app.get("/")
def index() -> dict[str, object]:
    return {"hello": "from Flask", "notes": len(NOTES)}


@app.post("/notes")
def add_note() -> tuple[dict[str, object], int]:
    NOTES.append(request.get_data(as_text=True))
    return {"added": NOTES[-1], "count": len(NOTES)}, 201


@app.get("/notes")
def list_notes() -> dict[str, object]:
    return {"notes": NOTES}


@app.get("/count/<int:n>")
def count(n: int) -> Response:
    """A streamed response: one line at a time."""
    return Response((f"{i}\n" for i in range(n)), mimetype="text/plain")
