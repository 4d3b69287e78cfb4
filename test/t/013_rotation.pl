# Secret rotation (webhook.rotate_secret): until keep_old passes, every
# request (deliveries, handshakes, moderation hooks) carries the new and the
# old signature, and the official Standard Webhooks verifier (npm
# standardwebhooks, installed by test/setup.sh) accepts each request with
# either secret; once keep_old has passed, only the new secret signs.
# Beside the npm verifier, an independent HMAC check in Perl.
use strict;
use warnings;
use Digest::SHA qw(hmac_sha256_base64);
use File::Basename qw(dirname);
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $npm_dir = dirname(__FILE__) . '/../node';
-d "$npm_dir/node_modules/standardwebhooks"
  or die "the npm verifier is not installed: run `npm ci` in test/node (test/setup.sh does)";

# The npm verifier's verdict on each request with this secret: "ok" or its error.
sub npm_verify
{
	my ($secret, @reqs) = @_;
	my $in = JSON::PP->new->encode(
		[ map { { secret => $secret, headers => $_->{headers}, body_b64 => $_->{body_b64} } } @reqs ]);
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'node', "$npm_dir/verify.js" ], '<', \$in, '>', \$out, '2>', \$err)
	  or die "node failed: $err";
	my @verdicts = split /\n/, $out;
	die "node gave " . scalar(@verdicts) . " verdicts for " . scalar(@reqs) . " requests: $err"
	  unless @verdicts == @reqs;
	return @verdicts;
}

# The signature of a request with this secret, computed here: "v1,<base64>".
sub perl_signature
{
	my ($secret, $req) = @_;
	(my $b64 = $secret) =~ s/^whsec_//;
	my $h = $req->{headers};
	my $mac = hmac_sha256_base64(
		"$h->{'webhook-id'}.$h->{'webhook-timestamp'}." . decode_base64($req->{body_b64}),
		decode_base64($b64));
	$mac .= '=' while length($mac) % 4;
	return "v1,$mac";
}

my $node = webhook_node('rotation');
# one path for everything: handshakes get their challenge back, moderation
# hooks this reply, deliveries too (they ignore it)
my $recv = start_receiver(paths => { '/hook' => { body => '[true, {}]', body_b64 => JSON::PP::true } });
my $ep = create_endpoint($node, $recv->url('/hook'));
my $wrong = 'whsec_' . MIME::Base64::encode_base64('x' x 32, '');
$node->safe_psql('postgres', qq{
	CREATE TABLE said (id int, channel_id text, payload jsonb);
	SELECT webhook.moderate('said', $ep);
});
sub secret
{
	return $node->safe_psql('postgres', "SELECT secret FROM webhook.endpoint WHERE id = $ep");
}

# One request of each kind: a delivery (with a body that is not ASCII), a
# handshake (verify_endpoint), a moderation hook. Returns them in that order.
my $round = 0;
sub one_of_each
{
	$round++;
	my $before = scalar($recv->requests('/hook'));
	my $event = $node->safe_psql('postgres',
		"SELECT webhook.emit('rotation.test', '{\"round\": $round, \"text\": \"h\xc3\xa9llo \xe2\x9c\x93\"}')");
	ok(wait_events_done($node, $event), "round $round: the delivery was made");
	$node->safe_psql('postgres', "SELECT webhook.verify_endpoint($ep)");
	ok($node->poll_query_until('postgres', "SELECT state FROM webhook.endpoint WHERE id = $ep", 'verified'),
		"round $round: the handshake passed");
	$node->safe_psql('postgres', "INSERT INTO said VALUES ($round, 'general', '{\"round\": $round}')");
	my @new = ($recv->requests('/hook'))[ $before .. scalar($recv->requests('/hook')) - 1 ];
	my ($delivery) = grep { ($_->{headers}{'webhook-id'} // '') =~ /^msg_/ } @new;
	my ($handshake) = grep { ($_->{headers}{'webhook-id'} // '') =~ /^vfy_/ } @new;
	my ($hook) = grep { ($_->{headers}{'webhook-id'} // '') =~ /^mod_/ } @new;
	ok($delivery && $handshake && $hook, "round $round: a delivery, a handshake and a hook call arrived")
	  or return ();
	like(decode_base64($delivery->{body_b64}), qr/h\xc3\xa9llo \xe2\x9c\x93/, "round $round: the body holds UTF-8");
	return ($delivery, $handshake, $hook);
}

# Before any rotation: one signature, the secret's.
my $s1 = secret();
my @reqs = one_of_each();
is_deeply([ map { $_->{headers}{'webhook-signature'} } @reqs ], [ map { perl_signature($s1, $_) } @reqs ],
	'before rotation: one signature, by the secret (Perl HMAC)');
is_deeply([ npm_verify($s1, @reqs) ], [ 'ok', 'ok', 'ok' ], 'the npm verifier accepts every request');
is_deeply([ npm_verify($wrong, @reqs) ], [ ('No matching signature found') x 3 ],
	'and refuses them with another secret');

# rotate_secret: a new secret, generated as create_endpoint's are.
my $s2 = $node->safe_psql('postgres', "SELECT webhook.rotate_secret($ep)");
like($s2, qr{^whsec_[A-Za-z0-9+/]{43}=$}, 'rotate_secret returns a new whsec_ secret');
isnt($s2, $s1, 'another secret');
is(secret(), $s2, 'which is now the secret');

# Until keep_old passes: "v1,<new> v1,<old>" on every request.
@reqs = one_of_each();
is_deeply([ map { $_->{headers}{'webhook-signature'} } @reqs ],
	[ map { perl_signature($s2, $_) . ' ' . perl_signature($s1, $_) } @reqs ],
	'after rotation: the new and the old signature, space-separated (Perl HMAC)');
is_deeply([ npm_verify($s2, @reqs) ], [ 'ok', 'ok', 'ok' ], 'the npm verifier accepts every request with the new secret');
is_deeply([ npm_verify($s1, @reqs) ], [ 'ok', 'ok', 'ok' ], 'and with the old one');
is_deeply([ npm_verify($wrong, @reqs) ], [ ('No matching signature found') x 3 ], 'not with another');

# Rotate again, keeping the old secret two seconds. The worker loads the
# endpoint at once; the old secret's end is then kept in its memory.
my $s3 = $node->safe_psql('postgres',
	"SELECT webhook.rotate_secret($ep, 'whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0', keep_old => '2 seconds')");
is($s3, 'whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0', 'a secret given is the new secret');
my $warm = $node->safe_psql('postgres', "SELECT webhook.emit('rotation.warm', '{}')");
ok(wait_events_done($node, $warm), 'the worker has sent with the rotated secret');
ok($node->poll_query_until('postgres',
	"SELECT now() > previous_secret_until FROM webhook.endpoint WHERE id = $ep"), 'keep_old has passed');

# After keep_old: the new secret's signature only.
@reqs = one_of_each();
is_deeply([ map { $_->{headers}{'webhook-signature'} } @reqs ], [ map { perl_signature($s3, $_) } @reqs ],
	'after keep_old: only the new signature (Perl HMAC)');
is_deeply([ npm_verify($s3, @reqs) ], [ 'ok', 'ok', 'ok' ], 'the npm verifier accepts every request with the new secret');
is_deeply([ npm_verify($s2, @reqs) ], [ ('No matching signature found') x 3 ], 'and none with the old one');

$recv->stop;
$node->stop;
done_testing();
