# The seed systems end to end: the four formats, filters, custom events
# (Phraseanet), quick replies through on_response (Channel Talk) and the
# moderation hooks (Hookbox), with the seed documents' own examples.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = webhook_node('seeds', conf => "webhook.timeout = '1s'\n");
my $recv = start_receiver(paths => {
	'/channel' => { headers => { 'x-quick-reply' => 'true', 'x-bot-name' => 'Helper' },
					body => 'Thanks, we will get back to you.' },
	'/mod_allow' => { body => '[true, {}]' },
	'/mod_override' => { body => '[true, {"override_payload": {"title": "a new title", "body": "some text"}}]' },
	'/mod_recipient' => { body => '[true, {"override_recipient_name": "mcarter_bot"}]' },
	'/mod_sender' => { body => '[true, {"only_to_sender": true}]' },
	'/mod_deny' => { body => '[false, {"error": "You are muted in channel-1"}]' },
	'/mod_deny_default' => { body => '[false, {}]' },
	'/mod_slow' => { body => '[true, {}]', delay => 3 },
	'/mod_malformed' => { body => '{"success": true}' },
	'/mod_500' => { status => 500, body => '[true, {}]' },
});

# The README's quick-reply handler: a person's new message answered with the
# response body; a bot's message is never answered, so a reply cannot loop.
$node->safe_psql('postgres', q{
	CREATE TABLE audit (id int PRIMARY KEY, action text, note text);
	SELECT webhook.track('audit', kind => 'row');
	CREATE FUNCTION quick_reply(d webhook.delivery, status integer, headers jsonb, body text)
	RETURNS void LANGUAGE plpgsql SET search_path = public AS $$
	BEGIN
	    IF status = 200 AND headers->>'x-quick-reply' = 'true'
	       AND d.event->>'update_type' = 'message_created'
	       AND d.event->'message'->>'bot_name' IS NULL THEN
	        INSERT INTO message (channel_id, chat_type, content, bot_name)
	        VALUES (d.event->>'channel', d.event->>'chat_type', body,
	                coalesce(headers->>'x-bot-name', 'bot'));
	    END IF;
	END $$;
});

my %ep;
for my $f (qw(slackchat channel phraseanet supabase))
{
	$ep{$f} = create_endpoint($node, $recv->url("/$f"), format => "'$f'", token => "'tok-$f'",
		events => "'{message_created,message_changed,row_created,new_feed_entry}'",
		$f eq 'channel' ? (on_response => "'quick_reply(webhook.delivery, integer, jsonb, text)'") : ());
}

# One event of each kind: a message, a reaction, a row of a plain table, a custom event.
# (in one transaction, so that they are events 1 to 4 whatever the quick reply does)
$node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO message (channel_id, "user", content) VALUES ('a-channel-uuid', 'USERID', 'A new message.');
	INSERT INTO reaction (message_id, reaction, "user") VALUES (1, 'wave', 'U2');
	INSERT INTO audit VALUES (7, 'login', NULL);
	SELECT webhook.emit('new_feed_entry', '{"name": "new_feed_entry", "users_were_notified": false}');
	COMMIT;
});

my $msg = '{"id": 1, "user": "USERID", "content": "A new message.", "chat_type": "live", "timestamp": "2018-10-16T17:23:49.0001+00:00", "channel_id": "a-channel-uuid"}';
my $msg_r = '{"id": 1, "user": "USERID", "content": "A new message.", "chat_type": "live", "reactions": [{"id": 1, "user": "U2", "reaction": "wave", "message_id": 1}], "timestamp": "2018-10-16T17:23:49.0001+00:00", "channel_id": "a-channel-uuid"}';
my $row = '{"id": 1, "user": "USERID", "content": "A new message.", "bot_name": null, "chat_type": "live", "timestamp": "2018-10-16T17:23:49.0001+00:00", "channel_id": "a-channel-uuid"}';
my $reaction = '{"id": 1, "user": "U2", "reaction": "wave", "message_id": 1}';
my $feed = '{"name": "new_feed_entry", "users_were_notified": false}';
my %expect = (
	slackchat => [
		qq({"type": "update_notification", "token": "tok-slackchat", "channel": "a-channel-uuid", "message": $msg, "chat_type": "live", "update_type": "message_created"}),
		qq({"type": "update_notification", "token": "tok-slackchat", "channel": "a-channel-uuid", "message": $msg_r, "chat_type": "live", "update_type": "message_changed"}),
		qq({"type": "update_notification", "token": "tok-slackchat", "channel": null, "message": null, "chat_type": null, "update_type": "row_created"}),
		qq({"data": $feed, "type": "new_feed_entry", "token": "tok-slackchat", "channel": null}) ],
	channel => [
		qq({"type": "Message", "event": "push", "entity": $row, "refers": {}}),
		qq({"type": "reaction", "event": "upsert", "entity": $reaction, "refers": {"message": $msg_r}}),
		qq({"type": "audit", "event": "upsert", "entity": {"id": 7, "note": null, "action": "login"}, "refers": {}}),
		qq({"type": "Event", "event": "new_feed_entry", "entity": $feed, "refers": {}}) ],
	phraseanet => [
		qq({"data": {"table": "message", "record": $row, "channel": "a-channel-uuid", "message": $msg, "chat_type": "live", "update_type": "message_created"}, "event": "update_notification", "version": 1, "webhookId": 1, "event_time": "T"}),
		qq({"data": {"table": "reaction", "record": $reaction, "channel": "a-channel-uuid", "message": $msg_r, "chat_type": "live", "update_type": "message_changed"}, "event": "update_notification", "version": 1, "webhookId": 2, "event_time": "T"}),
		qq({"data": {"table": "audit", "record": {"id": 7, "note": null, "action": "login"}, "update_type": "row_created"}, "event": "update_notification", "version": 1, "webhookId": 3, "event_time": "T"}),
		qq({"name": "new_feed_entry", "event": "new_feed_entry", "version": 1, "webhookId": 4, "event_time": "T", "users_were_notified": false}) ],
	supabase => [
		qq({"type": "INSERT", "table": "message", "record": $row, "schema": "public", "old_record": null}),
		qq({"type": "INSERT", "table": "reaction", "record": $reaction, "schema": "public", "old_record": null}),
		qq({"type": "INSERT", "table": "audit", "record": {"id": 7, "note": null, "action": "login"}, "schema": "public", "old_record": null}),
		qq({"type": "new_feed_entry", "table": null, "record": $feed, "schema": null, "old_record": null}) ],
);

for my $f (qw(slackchat channel phraseanet supabase))
{
	# Deliveries run concurrently, and the quick reply's own event (5) may
	# reach an endpoint before one of 1 to 4: pick them by event (the
	# webhook-id), not by arrival or count.
	my %by_event;
	ok(wait_until(sub {
			%by_event = map { (event_id($_) => $_) } $recv->deliveries("/$f");
			!grep { !$by_event{$_} } 1 .. 4 }),
		"$f: four events delivered");
	my @d = map { $by_event{$_} // {} } 1 .. 4;
	my @bodies = map { (my $b = $_->{body} // '') =~ s/"event_time": "\d{4}-\d\d-\d\dT[\d:.]+\+00:00"/"event_time": "T"/; $b } @d;
	for my $i (0 .. 3)
	{
		is($bodies[$i], $expect{$f}[$i], "$f: body of event " . ($i + 1));
	}
	is(join(',', map { $_->{query} // '' } @d), $f eq 'channel' ? join(',', ('token=tok-channel') x 4) : ',,,',
		"$f: token query parameter only for channel");
}

# Channel Talk's quick reply: the reply became a bot message, itself notified once.
ok(wait_until(sub { $node->safe_psql('postgres', "SELECT count(*) FROM message WHERE bot_name = 'Helper'") == 1 }),
	'quick reply inserted as a bot message');
is($node->safe_psql('postgres', "SELECT content || '|' || channel_id FROM message WHERE bot_name = 'Helper'"),
	'Thanks, we will get back to you.|a-channel-uuid', 'with the response body, in the same channel');
ok(wait_until(sub { grep { $_->{body} =~ /"bot_name": "Helper"/ } $recv->deliveries('/slackchat') }),
	'the bot message is notified like any message');
like((grep { $_->{body} =~ /"bot_name": "Helper"/ } $recv->deliveries('/slackchat'))[0]{body},
	qr/"message_created"/, 'as message_created');
# A marker after the bot message's own deliveries: still exactly one bot message.
ok(wait_until(sub { scalar(grep { $_->{body} =~ /Helper/ } $recv->deliveries('/channel')) == 1 }),
	'the channel endpoint got the bot message (and quick-replied to it)');
$node->safe_psql('postgres', "SELECT webhook.emit('new_feed_entry', '{\"marker\": 1}')");
ok($recv->wait_for_deliveries(6, '/channel'), 'marker delivered');
ok(wait_until(sub {
	$node->safe_psql('postgres', "SELECT count(*) FROM webhook.delivery WHERE endpoint_id = $ep{channel} AND status = 'delivered'") == 6 }),
	'all channel deliveries recorded');
is($node->safe_psql('postgres', "SELECT count(*) FROM message WHERE bot_name IS NOT NULL"), '1',
	'no reply to the bot: no loop');
# on_response errors are recorded on the delivery and not retried.
$node->safe_psql('postgres', q{
	CREATE FUNCTION failing(d webhook.delivery, status integer, headers jsonb, body text)
	RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'handler broke'; END $$;
	SELECT webhook.alter_endpoint(4, on_response => 'failing(webhook.delivery, integer, jsonb, text)');
	SELECT webhook.emit('new_feed_entry', '{"n": 2}');
});
ok(wait_until(sub {
	$node->safe_psql('postgres', "SELECT last_error FROM webhook.delivery WHERE endpoint_id = 4 AND event->'data'->>'n' = '2'")
	  eq 'on_response failing failed: handler broke' }), 'on_response error recorded on the delivery');
is($node->safe_psql('postgres', "SELECT status || attempts FROM webhook.delivery WHERE endpoint_id = 4 AND event->'data'->>'n' = '2'"),
	'delivered1', 'the delivery stays delivered, not retried');

# Filters: an endpoint subscribed to new_feed_entry gets only that; channels; keywords.
my $feeds = create_endpoint($node, $recv->url('/feeds'), format => "'phraseanet'", events => "'{new_feed_entry}'");
my $chan = create_endpoint($node, $recv->url('/chan'), channels => "'{ops}'");
my $kw = create_endpoint($node, $recv->url('/kw'), keywords => "'{urgent,outage}'", events => "'{message_created}'");

# The Phraseanet seed's NewFeedEntry document.
my $doc = q({"name": "new_feed_entry", "users_were_notified": false, "feed": {"title": "Cannes Festival", "description": "Your everyday news about cannes festival", "is_public": false}, "entry": {"author": {"name": "nicolas@fdc.fr", "email": "nicolas@fdc.fr"}, "title": "PRESS CONFERENCE - Winners", "description": "At the end of the Closing Ceremony, the winners have come, each in turn, speak to the press."}, "users": [{"mail": "bradley72@yahoo.com", "firstname": "John", "lastname": "Bradley"}, {"mail": "king.benett@movie-news.org", "firstname": "Johnatan", "lastname": "Benett"}]});
$node->safe_psql('postgres', qq{
	INSERT INTO message (channel_id, content) VALUES ('ops', 'URGENT: the database is down');
	INSERT INTO message (channel_id, content) VALUES ('random', 'lunch?');
	INSERT INTO message (channel_id, content) VALUES ('random', 'Outage in eu-west');
	SELECT webhook.emit('new_feed_entry', '$doc');
	SELECT webhook.emit('other_event', '{}', 'ops');
	SELECT webhook.emit('last', '{}');
});
ok($recv->wait_for_deliveries(1, '/feeds'), 'feed subscriber got the feed entry');
ok(wait_until(sub { scalar($recv->deliveries('/chan')) >= 3 && scalar($recv->deliveries('/kw')) >= 2 }),
	'channel and keyword subscribers got theirs');
# Barrier: the queue empty and nothing pending, seen together (a quick
# reply's event is queued in the transaction that records its delivery).
# Every request made has been answered then, so it is in the log.
ok(wait_idle($node), 'queue drained, nothing pending');
my @feeds = $recv->deliveries('/feeds');
is(scalar(@feeds), 1, 'the new_feed_entry subscriber got only the new_feed_entry');
my $got = json_decode($feeds[0]{body});
is_deeply([ map { delete $got->{$_} } qw(event version) ], [ 'new_feed_entry', 1 ], 'Phraseanet envelope');
ok(delete $got->{webhookId} && delete $got->{event_time}, 'with webhookId and event_time');
is_deeply($got, json_decode($doc), 'and the seed document itself at the top level');
# (the ops message was also quick-replied to by the channel endpoint's handler: two messages)
is(join(',', sort map { json_decode($_->{body})->{channel} } $recv->deliveries('/chan')),
	'ops,ops,ops', 'channels filter: only events of channel ops');
is(join(' / ', sort map { my $b = json_decode($_->{body}); $b->{message}{content} // $b->{type} } $recv->deliveries('/chan')),
	'Thanks, we will get back to you. / URGENT: the database is down / other_event', 'the message, its quick reply and the custom event');
is(join(' / ', sort map { json_decode($_->{body})->{message}{content} } $recv->deliveries('/kw')),
	'Outage in eu-west / URGENT: the database is down', 'keywords filter: case-insensitive match in content');

# Hookbox moderation: a publish hook on a tracked chat table.
sub form
{
	my %f;
	for (split /&/, shift)
	{
		my ($k, $v) = split /=/, $_, 2;
		s/\+/ /g, s/%([0-9A-Fa-f]{2})/chr(hex($1))/eg for $k, $v;
		$f{$k} = $v;
	}
	return \%f;
}
$node->safe_psql('postgres', q{
	CREATE TABLE publication (id serial PRIMARY KEY, channel_name text NOT NULL, payload jsonb,
	    originator text, only_to_sender boolean NOT NULL DEFAULT false);
	SELECT webhook.track('publication', kind => 'row', channel => 'channel_name');
	CREATE TABLE private_message (id serial PRIMARY KEY, sender text, recipient text, payload jsonb);
});
my $mod = $node->safe_psql('postgres',
	"SELECT id FROM webhook.create_endpoint('" . $recv->url('/mod_allow') . "', name => 'moderator', verify => false, events => '{none}')");
$node->safe_psql('postgres',
	"SELECT webhook.moderate('publication', $mod, channel => 'channel_name', sender => 'originator', only_to_sender => 'only_to_sender')");

# The Hookbox seed's publish example: allowed as is.
$node->safe_psql('postgres',
	q{INSERT INTO publication (channel_name, payload, originator) VALUES ('channel-1', '{"title": "a message", "body": "some text"}', 'some_user')});
my ($call) = $recv->requests('/mod_allow');
is($call->{headers}{'content-type'}, 'application/x-www-form-urlencoded', 'hook called form-encoded');
is_deeply(form($call->{body}),
	{ action => 'publish', channel_name => 'channel-1', payload => '{"body": "some text", "title": "a message"}', originator => 'some_user' },
	'with action, channel_name, payload (a JSON string) and originator');
ok(verify_signature($node->safe_psql('postgres', "SELECT secret FROM webhook.endpoint WHERE id = $mod"), $call),
	'hook request signed');
is($node->safe_psql('postgres', 'SELECT channel_name, payload, only_to_sender FROM publication'),
	'channel-1|{"body": "some text", "title": "a message"}|f', 'allowed row is in the table unchanged');

sub moderate_with
{
	my ($path) = @_;
	$node->safe_psql('postgres', "SELECT webhook.alter_endpoint($mod, url => '" . $recv->url($path) . "')");
	my ($ret, $out, $err) = $node->psql('postgres',
		q{INSERT INTO publication (channel_name, payload, originator) VALUES ('channel-1', '{"title": "x"}', 'u') RETURNING payload, only_to_sender});
	return $ret == 0 ? $out : $err;
}
is(moderate_with('/mod_override'), '{"body": "some text", "title": "a new title"}|f', 'override_payload replaces the payload');
is(moderate_with('/mod_sender'), '{"title": "x"}|t', 'only_to_sender sets its column');
my $queued = $node->safe_psql('postgres', "SELECT count(*) FROM webhook.queue WHERE source = 'publication'::regclass")
  + $node->safe_psql('postgres', "SELECT count(*) FROM webhook.delivery WHERE event->>'table' = 'publication'");
like(moderate_with('/mod_deny'), qr/ERROR:  You are muted in channel-1/, 'rejected with the endpoint\'s error');
like(moderate_with('/mod_deny_default'), qr/ERROR:  Unauthorized/, 'rejected as Unauthorized by default');
like(moderate_with('/mod_slow'), qr/ERROR:  moderation hook of table "publication" timed out/, 'rejected on timeout');
like(moderate_with('/mod_malformed'), qr/ERROR:  moderation hook of table "publication" sent a malformed reply/, 'rejected on a malformed reply');
like(moderate_with('/mod_500'), qr/ERROR:  moderation hook of table "publication" answered HTTP 500/, 'rejected on a non-200');
my $port = PostgreSQL::Test::Cluster::get_free_port();
$node->safe_psql('postgres', "SELECT webhook.alter_endpoint($mod, url => 'http://127.0.0.1:$port/')");
like(moderate_with_url(), qr/ERROR:  moderation hook of table "publication" could not be reached/, 'rejected when the hook is down');
sub moderate_with_url
{
	my ($ret, $out, $err) = $node->psql('postgres',
		q{INSERT INTO publication (channel_name, payload, originator) VALUES ('channel-1', '{"title": "x"}', 'u')});
	return $err;
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM publication'), '3', 'rejected rows are not in the table');
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook.queue WHERE source = 'publication'::regclass")
	+ $node->safe_psql('postgres', "SELECT count(*) FROM webhook.delivery WHERE event->>'table' = 'publication'"),
	$queued, 'and no event was queued for them');
# (requests() dies if the log cannot be read; and the one call is there)
my @allow = $recv->requests('/mod_allow');
is(scalar(@allow), 1, 'the receiver logged the one call to /mod_allow');
is(scalar(grep { $_->{headers}{connection} } @allow), 0, 'hook calls send no Connection header');

# The Hookbox seed's message example: the hook overrides the payload; and the recipient.
my $mod2 = $node->safe_psql('postgres',
	"SELECT id FROM webhook.create_endpoint('" . $recv->url('/mod_override') . "', verify => false, events => '{none}')");
$node->safe_psql('postgres',
	"SELECT webhook.moderate('private_message', $mod2, action => 'message', sender => 'sender', recipient => 'recipient', recipient_exists => 'true')");
is($node->safe_psql('postgres',
	q{INSERT INTO private_message (sender, recipient, payload) VALUES ('some_user', 'mcarter', '{"title": "a message", "body": "some text"}') RETURNING sender, recipient, payload}),
	'some_user|mcarter|{"body": "some text", "title": "a new title"}', 'message hook: override_payload, as in the seed');
my @message_calls = grep { form($_->{body})->{action} eq 'message' } $recv->requests('/mod_override');
is(scalar(@message_calls), 1, 'one message hook call');
is_deeply(form(($message_calls[0] // { body => '' })->{body}),
	{ action => 'message', sender => 'some_user', recipient => 'mcarter', recipient_exists => 'true',
	  payload => '{"body": "some text", "title": "a message"}' }, 'called with sender, recipient, recipient_exists and payload');
$node->safe_psql('postgres', "SELECT webhook.alter_endpoint($mod2, url => '" . $recv->url('/mod_recipient') . "')");
is($node->safe_psql('postgres',
	q{INSERT INTO private_message (sender, recipient, payload) VALUES ('some_user', 'mcarter', '{}') RETURNING recipient}),
	'mcarter_bot', 'override_recipient_name replaces the recipient');

# Keep-alive: calls from one backend reuse the hook's connection.
$node->safe_psql('postgres', q{
	INSERT INTO private_message (sender, recipient, payload) VALUES ('a', 'b', '{}');
	INSERT INTO private_message (sender, recipient, payload) VALUES ('a', 'c', '{}');
});
my %call = map { (form($_->{body})->{recipient} => $_) } $recv->requests('/mod_recipient');
ok($call{b} && $call{c}, 'both hook calls logged');
is($call{b}{client_port}, $call{c}{client_port}, 'one connection for two hook calls in a session');

$recv->stop;
$node->stop;
done_testing();
