"""A FastAPI app as a function: its HTTP trigger serves it directly (the handler is the
ASGI application ``app``). FastAPI comes from requirements.txt, installed at deploy.

    curl -s http://127.0.0.1:9000/http/fastapi-app/items/3?q=hi
    curl -s -X POST http://127.0.0.1:9000/http/fastapi-app/items \
      -H 'content-type: application/json' -d '{"name": "pen", "price": 1.5}'
"""

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

app = FastAPI(title="funclet example")


class Item(BaseModel):
    name: str
    price: float


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, object]:
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def create_item(item: Item) -> dict[str, object]:
    return {"created": item.model_dump(), "with_tax": round(item.price * 1.2, 2)}


@app.get("/ticks/{n}")
async def ticks(n: int) -> StreamingResponse:
    async def lines():  # type: ignore[no-untyped-def]
        for i in range(n):
            yield f"tick {i}\n"

    return StreamingResponse(lines(), media_type="text/plain")
