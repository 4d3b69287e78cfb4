-- wrk: POST a body shaped and sized like one slackchat delivery, with the
-- Standard Webhooks headers the worker sends.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "webhook/0.1"
wrk.headers["webhook-id"] = "msg_1_1"
wrk.headers["webhook-timestamp"] = "1700000000"
wrk.headers["webhook-signature"] = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="
wrk.body = '{"type": "update_notification", "token": "Jd1f3dZLqJ9X2y5uQk8bRw", "channel": "channel-42", "message": {"id": 1, "user": "U42", "content": "Hello from the benchmark: a chat message of about a hundred bytes, like people send.", "chat_type": "live", "timestamp": "2024-01-01T00:00:00.000000+00:00", "channel_id": "channel-42"}, "chat_type": "live", "update_type": "message_created"}'
