from llmclient import Client, SyncClient


async def main(client: Client) -> None:
    await client.chat("hi", temprature=0.2)
    await client.chat("hi", max_tokens="ten")


def sync_main() -> None:
    sync = SyncClient(defualt_model="fake/echo")
    sync.chat("hi", temprature=0.2)
    sync.chat("hi", max_tokens="ten")
    SyncClient(retry="3")
