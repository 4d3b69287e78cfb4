# Deliveries: the exact bodies of each event, the signature, and nothing
# for rolled-back or no-op changes.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = webhook_node('delivery');
my $recv = start_receiver();
my $ep = create_endpoint($node, $recv->url('/hook'), token => "'tok'");
my $secret = $node->safe_psql('postgres', "SELECT secret FROM webhook.endpoint WHERE id = $ep");

# The handshake: the documented body, signed.
my ($hs) = $recv->handshakes;
like($hs->{body}, qr/^\{"token": "tok", "type": "url_verification", "challenge": "[0-9a-f]{32}"\}$/,
	'handshake body');
ok(verify_signature($secret, $hs), 'handshake is signed');

my @cases = (
	[ 'message_created',
	  q{INSERT INTO message (channel_id, "user", content) VALUES ('a-channel-uuid', 'USERID', 'A new message.')},
	  '{"type": "update_notification", "token": "tok", "channel": "a-channel-uuid", "message": {"id": 1, "user": "USERID", "content": "A new message.", "chat_type": "live", "timestamp": "2018-10-16T17:23:49.0001+00:00", "channel_id": "a-channel-uuid"}, "chat_type": "live", "update_type": "message_created"}' ],
	[ 'message_changed',
	  q{UPDATE message SET content = 'An edited message.' WHERE id = 1},
	  '{"type": "update_notification", "token": "tok", "channel": "a-channel-uuid", "message": {"id": 1, "user": "USERID", "content": "An edited message.", "chat_type": "live", "timestamp": "2018-10-16T17:23:49.0001+00:00", "channel_id": "a-channel-uuid"}, "chat_type": "live", "update_type": "message_changed"}' ],
	[ 'a reaction on a message',
	  q{INSERT INTO reaction (message_id, reaction, "user") VALUES (1, 'thumbsup', 'U2')},
	  '{"type": "update_notification", "token": "tok", "channel": "a-channel-uuid", "message": {"id": 1, "user": "USERID", "content": "An edited message.", "chat_type": "live", "reactions": [{"id": 1, "user": "U2", "reaction": "thumbsup", "message_id": 1}], "timestamp": "2018-10-16T17:23:49.0001+00:00", "channel_id": "a-channel-uuid"}, "chat_type": "live", "update_type": "message_changed"}' ],
	[ 'an attachment and a keyword argument',
	  q{INSERT INTO attachment (message_id, title) VALUES (1, 'chart'); INSERT INTO keyword_argument (message_id, key, value) VALUES (1, 'style', 'bold')},
	  '{"type": "update_notification", "token": "tok", "channel": "a-channel-uuid", "message": {"id": 1, "user": "USERID", "kwargs": [{"id": 1, "key": "style", "value": "bold", "message_id": 1}], "content": "An edited message.", "chat_type": "live", "reactions": [{"id": 1, "user": "U2", "reaction": "thumbsup", "message_id": 1}], "timestamp": "2018-10-16T17:23:49.0001+00:00", "channel_id": "a-channel-uuid", "attachments": [{"id": 1, "title": "chart", "message_id": 1}]}, "chat_type": "live", "update_type": "message_changed"}' ],
	[ 'message_deleted',
	  q{DELETE FROM message WHERE id = 1},
	  '{"type": "update_notification", "token": "tok", "channel": "a-channel-uuid", "message": {"id": 1, "user": "USERID", "content": "An edited message.", "chat_type": "live", "timestamp": "2018-10-16T17:23:49.0001+00:00", "channel_id": "a-channel-uuid"}, "chat_type": "live", "update_type": "message_deleted"}' ],
	[ 'republish_request',
	  q{SELECT webhook.republish('a-channel-uuid', '{"title": "Channel Title", "introduction": "Lorem ipsum"}', 'live')},
	  '{"type": "republish_request", "token": "tok", "channel": "a-channel-uuid", "chat_type": "live", "channel_data": "{\"title\": \"Channel Title\", \"introduction\": \"Lorem ipsum\"}"}' ],
	[ 'unpublish_request',
	  q{SELECT webhook.unpublish('a-channel-uuid', '{"title": "Channel Title"}', 'live')},
	  '{"type": "unpublish_request", "token": "tok", "channel": "a-channel-uuid", "chat_type": "live", "channel_data": "{\"title\": \"Channel Title\"}"}' ],
	[ 'request_update',
	  q{SELECT webhook.request_update('a-channel-uuid', 'live')},
	  '{"type": "update_notification", "token": "tok", "channel": "a-channel-uuid", "message": null, "chat_type": "live", "update_type": null}' ],
	[ 'a custom event',
	  q{SELECT webhook.emit('new_feed_entry', '{"name": "new_feed_entry"}', 'feeds')},
	  '{"data": {"name": "new_feed_entry"}, "type": "new_feed_entry", "token": "tok", "channel": "feeds"}' ],
);

# Requests are logged as they arrive, and deliveries run concurrently: the
# requests of a case are told apart from earlier ones by their webhook-id,
# and ordered by event (the queue id in the webhook-id), not by arrival.
my $seen = 0;
my %seen_id;
sub new_deliveries
{
	return sort { event_id($a) <=> event_id($b) }
	  grep { !$seen_id{ $_->{headers}{'webhook-id'} } } $recv->deliveries('/hook');
}
for my $case (@cases)
{
	my ($what, $sql, @bodies) = @$case;
	$node->safe_psql('postgres', $sql);
	# the attachment case makes two events; the last one carries both children
	my $expect_n = $what =~ /and a keyword/ ? 2 : 1;
	ok($recv->wait_for_deliveries($seen + $expect_n, '/hook'), "$what delivered");
	my @d = $recv->deliveries('/hook');
	is(scalar(@d), $seen + $expect_n, "$what: one request per event");
	my @new = new_deliveries();
	my $last = $new[-1];
	is($last->{body}, $bodies[0], "$what: body");
	is($last->{headers}{'content-type'}, 'application/json', "$what: content type");
	like($last->{headers}{'user-agent'}, qr{^webhook/\d+\.\d+$}, "$what: user agent");
	ok(verify_signature($secret, $last), "$what: signature verifies");
	$seen_id{ $_->{headers}{'webhook-id'} } = 1 for @new;
	$seen += $expect_n;
}

# Every delivery is recorded as delivered with what came back. The receiver
# logs a request before it answers, and the worker records results in
# batches after the answers: wait for the records.
ok($node->poll_query_until('postgres',
	"SELECT count(*) FILTER (WHERE status = 'delivered' AND response_status = 200 AND attempts = 1
	    AND response_body = 'ok' AND response_headers ? 'content-length' AND duration IS NOT NULL
	    AND delivered_at IS NOT NULL), count(*) FROM webhook.delivery",
	"$seen|$seen"), 'deliveries recorded');

# The webhook-id is msg_<event>_<endpoint>, one per delivery.
my %ids = map { $_->{headers}{'webhook-id'} => 1 } $recv->deliveries('/hook');
is(scalar(keys %ids), $seen, 'webhook-id differs per delivery');
is(join(' ', sort grep { !/^msg_\d+_$ep$/ } keys %ids), '', 'webhook-id form');
# the timestamp of each request against the time the receiver got it
my ($skew) = sort { $b <=> $a } map { abs($_->{time} - $_->{headers}{'webhook-timestamp'}) } $recv->deliveries('/hook');
cmp_ok($skew, '<', 60, 'webhook-timestamp is the current unix time');

# A rolled-back change, and an UPDATE that changes nothing, deliver nothing;
# the next committed event arrives alone.
$node->safe_psql('postgres', q{
	INSERT INTO message (id, channel_id, content) VALUES (1000, 'c', 'kept');
	BEGIN;
	INSERT INTO message (channel_id, content) VALUES ('c', 'rolled back');
	ROLLBACK;
	UPDATE message SET content = content WHERE id = 1000;
	SELECT webhook.emit('marker', '{}');
});
ok(wait_until(sub { grep { $_->{body} =~ /"type": "marker"/ } $recv->deliveries('/hook') }), 'marker delivered');
# Once the queue is empty and nothing is pending, every request the worker
# made for these changes has been answered, so logged.
ok(wait_idle($node), 'queue drained');
my @last = new_deliveries();
is(scalar(@last), 2, 'two requests since: the committed insert and the marker');
like($last[0]{body}, qr/"content": "kept".*"message_created"/, 'committed insert delivered');
like($last[1]{body}, qr/"type": "marker"/, 'then the marker: nothing for the rollback or the no-op update');
$seen_id{ $_->{headers}{'webhook-id'} } = 1 for @last;
$seen += 2;

# A multi-row statement makes one event per row.
$node->safe_psql('postgres',
	q{INSERT INTO message (channel_id, content) SELECT 'bulk', 'row ' || g FROM generate_series(1, 50) g});
ok($recv->wait_for_deliveries($seen + 50, '/hook'), 'multi-row insert: 50 deliveries');
# Keep-alive: the requests share a few connections (about endpoint_concurrency = 16).
my %ports = map { $_->{client_port} => 1 } $recv->requests('/hook');
my $nreq = scalar($recv->requests('/hook'));
cmp_ok(scalar(keys %ports), '<', $nreq / 2, "connections reused: $nreq requests over " . scalar(keys %ports) . ' connections');

# The worker shows in pg_stat_activity by name.
is($node->safe_psql('postgres',
	"SELECT backend_type || '/' || application_name FROM pg_stat_activity WHERE backend_type = 'webhook worker'"),
	'webhook worker/webhook worker', 'worker is named in pg_stat_activity');

$recv->stop;
$node->stop;
done_testing();
