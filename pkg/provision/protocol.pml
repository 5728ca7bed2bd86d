/*
 * protocol.pml: a Promela model of keyvend's per-user protocol, the lease
 * on a user's record in the state table (pkg/state/lease.go; hold in
 * pkg/provision/lease.go) and the steps of create, rotate, update, delete
 * and the reaper, checked by spin over every interleaving (`make model`).
 * docs/architecture.md ("The protocol, model-checked") says which Go
 * function each step is; the comments below name them too.
 *
 * One user name, in three systems; each call is one atomic step:
 *   the table  the user's record: phase (absent, creating, ready,
 *              deleting), version, lease holder, key id, grants,
 *              requester, and whether the expiry index the reaper queries
 *              has it (Due)
 *   IAM        the user, its grant set (its one user policy: grant mode
 *              policy), its keyvend:grants and keyvend:requester tags, its
 *              access keys (two at most); DeleteUser refused while a key or
 *              the policy is there (moto allows it)
 *   Secrets    the user's secret: none, live holding a key, or scheduled
 *   Manager    for deletion. AWS refuses PutSecretValue and CreateSecret on
 *              a scheduled secret (InvalidRequestException); moto accepts
 *              the put, so the tests cannot show what this model does.
 *
 * Assumptions:
 *   - The lease lasts RepairAfter, longer than any operation, compensation
 *     included: a live holder never loses it, and a lease is taken over
 *     only once its holder crashed (crashed[h]), in one conditional write.
 *   - Any process may crash after any call that changes something (a crash
 *     after a read is one before it); its lease then goes stale. At most
 *     MAXCRASH (1) crashes in a run.
 *   - A round of concurrent reads is one atomic snapshot; two concurrent
 *     calls run in both orders, a delete's detach round in any order; a
 *     request's keys are deleted in a fixed order.
 *   - "Young" (younger than RepairAfter or HalfMadeAfter): made after the
 *     observer started, or by a request still running; else either.
 *   - Not modelled: expiry, force delete, grant mode group, If-Match,
 *     authorization (every caller may), errors other than the ones state
 *     causes (AWS refusals, lost leases), secrets or users keyvend did not
 *     make, the twin path's grant-group details.
 *
 * Checked (CHECK, assert; a trail names the one that failed):
 *   (a) in every state, no live secret whose IAM user is gone; after a
 *       rotate's or a restock's store step the user and its live secret
 *       are there; a secret is restored only under the lease on a live
 *       user, and scheduled for deletion only by the lease holder or when
 *       there is neither record nor user
 *   (b) at quiescence every access key that exists is the one in the
 *       user's live secret
 *   (c) in every state the grant set is one a request asked for (none, G0,
 *       G1 or G2; never a union); at quiescence a ready record's grants
 *       are IAM's
 *   (d) a create or rotate answering success hands out a key that exists
 *       (checked with the call that completes it: the commit); the key in
 *       a live secret is deleted only by a delete or a compensation tearing
 *       the user down; a create never replaces a working key another
 *       request handed out
 *   (e) at quiescence no record is left creating or deleting, and a ready
 *       record has its user, its key in the live secret
 * Quiescence: every request has ended or crashed, then two reaper runs
 * that do not crash; checked at the end of the reaper.
 *
 * -DNOLEASE: taking a lease always succeeds and every holder "holds" it
 * (no mutual exclusion): must fail. -DONLY=n: scenario n alone (7 and 9
 * only so). -DREADY_ALWAYS: also require, in every state, that a ready
 * record nobody holds has a live secret with a key the user has.
 * FIX_MINE, FIX_RECONCILE, FIX_ORPHAN (make model sets them) and FIX_ADOPT:
 * fixes of what this model finds in the code, described where they apply
 * and in docs/architecture.md.
 */

/* The code has these fixes of what the model found (create.go Create,
   reconcile.go reconcileUser and reconcileSecrets, reap.go restock):
   `make model` checks the code as it is. -DWITHOUT_FIXES checks the code
   as it was, and fails. */
#ifndef WITHOUT_FIXES
#define FIX_MINE
#define FIX_RECONCILE
#define FIX_ORPHAN
#endif

#ifndef MAXCRASH
#define MAXCRASH 1
#endif

/* record phases */
#define R_ABSENT   0
#define R_CREATING 1
#define R_READY    2
#define R_DELETING 3
#define PB(p) (1 << (p))

/* secret */
#define S_NONE  0
#define S_LIVE  1
#define S_SCHED 2

/* grants: a set of bits */
#define G0 1
#define G1 2
#define G2 4

/* results */
#define E_OK       0
#define E_NOTFOUND 1
#define E_BUSY     2
#define E_VERSION  3
#define E_PHASE    4
#define E_EXISTS   5
#define E_LOST     6
#define E_INVALID  7
#define E_CONFLICT 8
#define E_AWS      9

/* holders: requests 1..4, reaper runs 5 (concurrent) and 6 (quiescent) */
#define NH 7
#define RP1 5
#define RP2 6
/* key ids: 1 the initial key, request i makes key i+1, reaper run r key r+1 */
#define KB(k) (1 << (k))
#define NKEYS (((keys>>1)&1)+((keys>>2)&1)+((keys>>3)&1)+((keys>>4)&1)+((keys>>5)&1)+((keys>>6)&1)+((keys>>7)&1))

/* the table: the user's record */
byte rph;      /* phase */
byte rver;     /* version */
byte rholder;  /* lease holder, 0: none */
byte rkey;     /* key id recorded */
byte rgr;      /* grants recorded */
byte rreq;     /* requester recorded */
bool rdue;     /* in the expiry index (Record.Due: not ready) */
/* IAM */
bool user;
byte ugr;      /* grant set (the user policy) */
byte utag;     /* keyvend:grants (fingerprint of the grants it was made or updated for) */
byte ureq;     /* keyvend:requester */
byte ucr;      /* who created the user (for "young") */
byte ubirth;   /* when (epoch) */
byte keys;     /* access keys, a set of key ids */
/* Secrets Manager */
byte sec;
byte skey;     /* key id in the secret */
byte scr;      /* who created the secret */
byte sbirth;   /* when (epoch): its CreatedDate */
byte epoch;    /* a clock: ticks at each CreateUser and CreateSecret */

bool running[NH];
bool crashed[NH];
byte ncrash;
byte handed;   /* keys a create or rotate answered (a ghost) */
byte nreq;     /* requests still running */

#ifdef NOLEASE
#define LEASABLE true
#define HOLDS    (rph != R_ABSENT)
#else
/* Store.Lease's condition: nobody holds it, the lease is stale (its
   holder crashed: the TTL assumption), or the taker holds it already */
#define LEASABLE (rholder == 0 || crashed[rholder] || rholder == me)
/* Commit's, Remove's, Release's and Abort's: lease_holder = :me */
#define HOLDS    (rholder == me)
#endif

#define CRASH \
	if \
	:: cancrash && ncrash < MAXCRASH -> ncrash++; crashed[me] = 1; printf("p%d CRASH\n", me); goto dead \
	:: true \
	fi

/* (d): a create or rotate answers success with anskey right after the
   call that completes it (answering is set before that call): the key
   exists then */
#define ANSWER \
	if \
	:: answering -> printf("p%d answers k%d\n", me, anskey); CHECK((keys & KB(anskey)) != 0, "p%d VIOLATED (d): the key answered does not exist\n"); handed = handed | KB(anskey); answering = 0 \
	:: else \
	fi

/* every process's locals */
#define LOCALS \
	byte me; bool cancrash = 1; \
	byte lerr, cerr, aerr, uerr, kerr, perr, serr; \
	bool hrec, hdone, hclaimed; byte hback, hver, hph, hkey, hgr, hreq; \
	bool s_user; byte s_gr, s_keys, s_sec, s_skey, s_tag, s_ucr, s_ubirth, s_ureq, born, myub, myrq, lrq, lgr; bool lrec; \
	byte mykey, cur, k, dk, aph, akey; bool dp, ds, young, old, td, answering, iscreate; byte d_sec, anskey

/* a process that has ended keeps its slot: its locals are zeroed so that
   they do not tell otherwise equal states apart */
#define RESET \
	lerr = 0; cerr = 0; aerr = 0; uerr = 0; kerr = 0; perr = 0; serr = 0; \
	hrec = 0; hdone = 0; hclaimed = 0; hback = 0; hver = 0; hph = 0; hkey = 0; hgr = 0; hreq = 0; \
	s_user = 0; s_gr = 0; s_keys = 0; s_sec = 0; s_skey = 0; s_tag = 0; s_ucr = 0; s_ubirth = 0; s_ureq = 0; born = 0; myub = 0; myrq = 0; lrq = 0; lgr = 0; lrec = 0; \
	mykey = 0; cur = 0; k = 0; dk = 0; aph = 0; akey = 0; dp = 0; ds = 0; young = 0; old = 0; td = 0; answering = 0; iscreate = 0; \
	d_sec = 0; anskey = 0

/* "young": younger than RepairAfter (or HalfMadeAfter): made after the
   observer started (every operation is shorter than that), or by a request
   still running; else either */
#define YOUNG(maker, birth) (running[maker] || birth > born)

/* the key in the user's secret that the user has (userState.secretKey) */
#define SKEY ((s_sec == S_LIVE && s_skey != 0 && (s_keys & KB(s_skey)) != 0) -> s_skey : 0)
#define NONDET(x) if :: x = 1 :: x = 0 fi

/* an assertion that says which invariant it is in the trail */
#define CHECK(c, what) if :: !(c) -> printf(what, me); assert(c) :: else fi

/* ---- the table (pkg/state/lease.go) ---- */

inline newHold() {
	hrec = 0; hdone = 0; hclaimed = 0; hback = 0; hver = 0; hph = 0; hkey = 0; hgr = 0; hreq = 0
}

/* Store.Lease(opts): phmask (Phases), setph (SetPhase), ver (Version) */
inline take(phmask, setph, ver) {
	atomic {
		if
		:: rph == R_ABSENT -> lerr = E_NOTFOUND; lrec = 0; printf("p%d lease: no record\n", me)
		:: rph != R_ABSENT && !(LEASABLE) -> lerr = E_BUSY; lrec = 1; lrq = rreq; lgr = rgr; printf("p%d lease: busy (p%d)\n", me, rholder)
		:: rph != R_ABSENT && (LEASABLE) && ver != 0 && rver != ver -> lerr = E_VERSION; lrec = 1; lrq = rreq; lgr = rgr; printf("p%d lease: version\n", me)
		:: rph != R_ABSENT && (LEASABLE) && (ver == 0 || rver == ver) && phmask != 0 && (phmask & PB(rph)) == 0 -> lerr = E_PHASE; lrec = 1; lrq = rreq; lgr = rgr; printf("p%d lease: phase %d\n", me, rph)
		:: else ->
			lerr = E_OK; hrec = 1; hver = rver; hph = rph; hkey = rkey; hgr = rgr; hreq = rreq;
			printf("p%d lease taken (phase %d v%d, held by p%d, crashed %d)\n", me, rph, rver, rholder, crashed[rholder]);
			rholder = me;
			if
			:: setph != 0 -> hback = rph; rph = setph; hph = setph;
				rdue = 1    /* moved to creating or deleting: in the expiry index */
			:: else
			fi;
			CRASH
		fi
	}
}

/* Store.Claim: the record written if none exists (attribute_not_exists) */
inline claim(ph, gr, key, rq) {
	atomic {
		if
		:: rph == R_ABSENT ->
			rph = ph; rver = 1; rholder = me; rkey = key; rgr = gr; rreq = rq; rdue = (ph != R_READY);
			hrec = 1; hclaimed = 1; hver = 1; hph = ph; hkey = key; hgr = gr; hreq = rq; cerr = E_OK;
			printf("p%d claim: record phase %d key %d grants %d\n", me, ph, key, gr);
			CRASH
		:: else -> cerr = E_EXISTS; printf("p%d claim: exists\n", me)
		fi
	}
}

/* hold.commit → Store.Commit: version bumped, lease released, the expiry
   index written with the item */
inline commit(ph, key, gr, rq) {
	atomic {
		if
		:: (HOLDS) && rver == hver ->
			rph = ph; rver++; rholder = 0; rkey = key; rgr = gr; rreq = rq; rdue = (ph != R_READY);
			hver = rver; hph = ph; hkey = key; hgr = gr; hreq = rq; hdone = 1; cerr = E_OK;
			printf("p%d commit: phase %d v%d key %d grants %d\n", me, ph, rver, key, gr);
			CRASH; ANSWER
		:: else -> hdone = 1; cerr = E_LOST; printf("p%d commit: lease lost\n", me)
		fi
	}
}

/* hold.remove → Store.Remove */
inline hremove() {
	atomic {
		if
		:: hrec && (HOLDS) ->
			rph = R_ABSENT; rver = 0; rholder = 0; rkey = 0; rgr = 0; rreq = 0; rdue = 0; cerr = E_OK;
			printf("p%d remove record\n", me);
			hdone = 1;
			CRASH
		:: hrec && !(HOLDS) -> cerr = E_LOST
		:: else -> cerr = E_OK
		fi;
		hdone = 1
	}
}

/* hold.release → Store.Release, or Store.Abort back to h.back: neither
   touches the expiry index */
inline hrelease() {
	atomic {
		if
		:: !hdone && hrec && (HOLDS) ->
			if
			:: hback != 0 -> rph = hback
			:: else
			fi;
			rholder = 0;
			printf("p%d release (phase %d)\n", me, rph)
		:: else
		fi;
		hdone = 1
	}
}

/* hold.adopt: a user with no record recorded as IAM holds it (recordOf) */
inline adopt(phase) {
	if
	:: hrec -> cerr = E_OK
	:: else ->
		aph = (SKEY != 0 -> R_READY : R_CREATING); akey = SKEY;
		if
		:: phase != 0 -> hback = aph; aph = phase
		:: else
		fi;
		claim(aph, s_gr, akey, s_ureq);
		if
		:: cerr != E_OK -> hdone = 1
		:: else ->
#ifdef FIX_ADOPT
			/* read the user again, now under the lease: the first read
			   was made holding nothing. Gone: the record goes; else it
			   says what this read found (lease kept). */
			snapshot();
			if
			:: !s_user -> hremove(); cerr = E_NOTFOUND
			:: else ->
				aph = (SKEY != 0 -> R_READY : R_CREATING); akey = SKEY;
				if
				:: phase != 0 -> hback = aph; aph = phase
				:: else
				fi;
				atomic {
					if
					:: (HOLDS) && rver == hver ->
						rph = aph; rver++; rkey = akey; rgr = s_gr; rreq = s_ureq; rdue = (aph != R_READY);
						hver = rver; hph = aph; hkey = akey; hgr = s_gr; hreq = s_ureq;
						printf("p%d record again: phase %d key %d grants %d\n", me, aph, akey, s_gr);
						CRASH
					:: else -> hdone = 1; cerr = E_LOST
					fi
				}
			fi
#else
			skip
#endif
		fi
	fi
}

/* one round of reads: GetUser ‖ the user's grants ‖ ListAccessKeys ‖
   GetSecretValue (a scheduled secret reads as none) */
inline snapshot() {
	atomic {
		s_user = user; s_gr = ugr; s_keys = keys; s_sec = sec; s_skey = skey; s_tag = utag; s_ucr = ucr; s_ubirth = ubirth; s_ureq = ureq;
		printf("p%d read: user %d grants %d keys %d secret %d key %d\n", me, user, ugr, keys, sec, skey)
	}
}

/* ---- IAM ---- */

inline iamCreateUser(tag) {
	atomic {
		if
		:: user -> aerr = E_EXISTS; printf("p%d CreateUser: exists\n", me)
		:: else -> user = 1; ugr = 0; keys = 0; utag = tag; ureq = myrq; ucr = me; epoch++; ubirth = epoch; myub = epoch; aerr = E_OK; printf("p%d CreateUser\n", me); CRASH
		fi
	}
}

/* DeleteUser: AWS refuses it while keys or a policy are attached (moto
   does not); NoSuchEntity counts as done */
inline iamDeleteUser() {
	atomic {
		if
		:: !user -> aerr = E_OK
		:: user && (keys != 0 || ugr != 0) -> aerr = E_CONFLICT; printf("p%d DeleteUser: conflict\n", me)
		:: else -> user = 0; utag = 0; ureq = 0; ucr = 0; ubirth = 0; aerr = E_OK; printf("p%d DeleteUser\n", me); CRASH
		fi
	}
}

/* CreateAccessKey: IAM allows two keys */
inline iamCreateKey(key) {
	atomic {
		if
		:: !user || NKEYS >= 2 -> aerr = E_AWS; printf("p%d CreateAccessKey: refused\n", me)
		:: else -> keys = keys | KB(key); aerr = E_OK; printf("p%d CreateAccessKey k%d\n", me, key); CRASH
		fi
	}
}

inline iamDeleteKey(key) {
	atomic {
		if
		:: user && (keys & KB(key)) != 0 ->
			printf("p%d DeleteAccessKey k%d\n", me, key);
			CHECK(td || !(sec == S_LIVE && skey == key), "p%d VIOLATED (d): the key in the live secret deleted, the user kept\n");
			keys = keys - KB(key); CRASH
		:: else
		fi
	}
}

/* PutUserPolicy: the whole grant set at once */
inline iamPutPolicy(gr) {
	atomic {
		if
		:: user -> ugr = gr; aerr = E_OK; printf("p%d PutUserPolicy %d\n", me, gr); CRASH
		:: else -> aerr = E_AWS
		fi
	}
}

inline iamDeletePolicy() {
	atomic {
		if
		:: user && ugr != 0 -> ugr = 0; printf("p%d DeleteUserPolicy\n", me); CRASH
		:: else
		fi
	}
}

inline iamTagUser(tag) {
	atomic {
		if
		:: user -> utag = tag; aerr = E_OK; printf("p%d TagUser %d\n", me, tag); CRASH
		:: else -> aerr = E_AWS
		fi
	}
}

/* ---- Secrets Manager ---- */

inline smCreateSecret(key) {
	atomic {
		if
		:: sec == S_NONE -> sec = S_LIVE; skey = key; scr = me; epoch++; sbirth = epoch; aerr = E_OK; printf("p%d CreateSecret k%d\n", me, key); CRASH; ANSWER
		:: sec == S_LIVE -> aerr = E_EXISTS
		:: sec == S_SCHED -> aerr = E_INVALID
		fi
	}
}

/* PutSecretValue: AWS refuses a secret scheduled for deletion */
inline smPut(key) {
	atomic {
		if
		:: sec == S_LIVE ->
			printf("p%d PutSecretValue k%d\n", me, key);
			CHECK(!iscreate || skey == key || (keys & KB(skey)) == 0 || (handed & KB(skey)) == 0, "p%d VIOLATED (d): a create replaced a working key it did not make, handed out\n");
			skey = key; aerr = E_OK; CRASH; ANSWER
		:: sec == S_SCHED -> aerr = E_INVALID; printf("p%d PutSecretValue: scheduled\n", me)
		:: sec == S_NONE -> aerr = E_NOTFOUND
		fi
	}
}

/* RestoreSecret: only under the lease on a live user */
inline smRestore() {
	atomic {
		if
		:: sec == S_SCHED -> printf("p%d RestoreSecret\n", me); CHECK(user && (HOLDS), "p%d VIOLATED (a): restored without the lease on a live user\n"); sec = S_LIVE; CRASH
		:: else
		fi
	}
}

/* DeleteSecret with the recovery window: scheduled; a scheduled or missing
   secret counts as done */
inline smDelete() {
	atomic {
		if
		:: sec == S_LIVE ->
			printf("p%d DeleteSecret (scheduled)\n", me);
			CHECK((HOLDS) || (rph == R_ABSENT && !user), "p%d VIOLATED (a): scheduled without the lease, record or user there\n");
			sec = S_SCHED; CRASH
		:: else
		fi
	}
}

/* ---- provision (pkg/provision) ---- */

/* secret.go storeKey: CreateSecret, or overwriteSecret (ownSecret's
   DescribeSecret, RestoreSecret if scheduled, PutSecretValue) */
inline storeKey(key) {
	smCreateSecret(key);
	if
	:: aerr == E_EXISTS || aerr == E_INVALID ->
		d_sec = sec;    /* DescribeSecret */
		if
		:: d_sec == S_NONE -> aerr = E_NOTFOUND
		:: d_sec == S_SCHED -> smRestore(); smPut(key)
		:: d_sec == S_LIVE -> smPut(key)
		fi
	:: else
	fi
}

/* rotate.go putKey: PutSecretValue, else storeKey */
inline putKey(key) {
	smPut(key);
	if
	:: aerr == E_NOTFOUND || aerr == E_INVALID -> storeKey(key)
	:: else
	fi
}

/* delete.go finishDelete: detach (every key of the inventory ‖ the user
   policy ‖ DeleteSecret, in any order), then DeleteUser. perr: result */
inline finishDelete() {
	hback = 0; td = 1;
	dk = s_keys; dp = (s_gr != 0); ds = 1;
	do
	:: dk != 0 ->
		k = 1;
		do
		:: (dk & KB(k)) == 0 -> k++
		:: else -> break
		od;
		iamDeleteKey(k); dk = dk - KB(k)
	:: dp -> iamDeletePolicy(); dp = 0
	:: ds -> smDelete(); ds = 0
	:: dk == 0 && !dp && !ds -> break
	od;
	iamDeleteUser();
	perr = aerr
}

/* delete.go deprovision: inventory; a user gone only loses its record */
inline deprovision() {
	snapshot();
	if
	:: !s_user -> hremove()
	:: else ->
		finishDelete();
		if
		:: perr == E_OK -> hremove()
		:: else
		fi
	fi
}

/* delete every key in the set dk (deleteKeysExcept, repair), in order */
inline deleteKeys() {
	k = 1;
	do
	:: k > 7 -> break
	:: k <= 7 && (dk & KB(k)) != 0 -> iamDeleteKey(k); k++
	:: k <= 7 && (dk & KB(k)) == 0 -> k++
	od
}

/* ---- create (create.go Create, finish; existing.go existing; repair.go
   repair; rollback.go compensate) ---- */
proctype Create(byte id; byte rq) {
	LOCALS;
	bool mayBeYoung, createdUser, stored, committed, leaseLost, stepErr, ok, userDeleted;
	byte sgkey, ckeys, nrq;
	atomic { me = id; myrq = rq; mykey = id + 1; anskey = mykey; born = epoch; iscreate = 1; printf("p%d: create (grants %d, requester %d)\n", me, G0, rq) };
	newHold();
	/* round 1: Claim ‖ CreateUser */
	if
	:: true -> claim(R_CREATING, G0, 0, myrq); iamCreateUser(G0); uerr = aerr
	:: true -> iamCreateUser(G0); uerr = aerr; claim(R_CREATING, G0, 0, myrq)
	fi;
	if
	:: cerr == E_EXISTS ->
		/* another request's record: take it over unless its lease is live */
		take(0, 0, 0);
		if
		:: lerr == E_NOTFOUND -> hrec = 0; lerr = E_BUSY   /* removed between the claim and the lease */
		:: else
		fi;
		if
		:: lerr != E_OK ->
			hdone = 1;
			/* dropUser, unless the claim is the same request's (sameRequest) */
			if
			:: uerr == E_OK && !(lrec && lrq == myrq && lgr == G0) -> iamDeleteUser()
			:: else
			fi;
			goto done
		:: else
		fi;
		if
		:: hph == R_DELETING && uerr == E_EXISTS ->
			deprovision();    /* finishStaleDelete */
			goto done
		:: else
		fi;
#ifdef FIX_MINE
		/* the fix: a CreateUser that succeeded says nothing of who made
		   or completed the user since (a twin's claim, a delete, another
		   create): decide from what IAM holds */
		uerr = E_EXISTS;
#endif
		if
		:: uerr == E_EXISTS -> mayBeYoung = 0; goto existing   /* under the lease nobody else makes it */
		:: else -> createdUser = 1; goto finish   /* "the record was stale and its user gone: the user is ours" */
		fi
	:: cerr == E_OK && uerr == E_EXISTS -> mayBeYoung = 1; goto existing
	:: cerr == E_OK && uerr == E_OK -> createdUser = 1; goto finish
	fi;

existing:
	/* existing.go existing: readUser, then decide */
	snapshot();
	if
	:: !s_user ->
		if
		:: hclaimed -> hremove()
		:: else
		fi;
		goto done
	:: else
	fi;
	if
	:: !mayBeYoung -> young = 0
	:: mayBeYoung && YOUNG(s_ucr, s_ubirth) -> young = 1
	:: mayBeYoung && !YOUNG(s_ucr, s_ubirth) -> NONDET(young)
	fi;
	/* a twin request made it and left it to the claim's holder */
	if
	:: young && s_tag == G0 && s_sec != S_LIVE && s_keys == 0 && hclaimed && s_ureq == myrq && (s_gr & ~G0) == 0 ->
		createdUser = 1; goto finish
	:: else
	fi;
	if
	:: SKEY != 0 && s_gr == G0 ->
		/* replay: h.record(recordOf), answer the key in the secret */
		if
		:: !hclaimed && hph == R_READY && hkey == SKEY && hgr == s_gr -> skip
		:: else ->
			akey = SKEY; anskey = akey; answering = 1;
			commit(R_READY, akey, s_gr, s_ureq);
			answering = 0;
			goto done
		fi;
		/* the lease is held until done */
		printf("p%d answers k%d\n", me, s_skey);
		CHECK((keys & KB(s_skey)) != 0, "p%d VIOLATED (d): the key answered does not exist\n");
		handed = handed | KB(s_skey);
		goto done
	:: SKEY != 0 && s_gr != G0 && young && s_tag == G0 && (s_gr & ~G0) == 0 ->
		goto inprogress
	:: (SKEY != 0 && s_gr != G0 && !(young && s_tag == G0 && (s_gr & ~G0) == 0)) ||
	   (SKEY == 0 && (s_gr & ~G0) != 0) ->
		/* conflict: record the user as it is, then refuse */
		aph = (SKEY != 0 -> R_READY : R_CREATING); akey = SKEY;
		if
		:: !hclaimed && hph == aph && hkey == akey && hgr == s_gr -> skip
		:: else -> commit(aph, akey, s_gr, s_ureq)
		fi;
		goto done
	:: SKEY == 0 && (s_gr & ~G0) == 0 && young ->
		goto inprogress
	:: SKEY == 0 && (s_gr & ~G0) == 0 && !young ->
		/* repair: delete every key (none is in the secret), then finish */
		dk = s_keys; td = 0;
		deleteKeys();
		createdUser = 0;
		goto finish
	fi;
inprogress:
	if
	:: hclaimed -> hremove()
	:: else
	fi;
	goto done;

finish:
	/* round 2: CreateAccessKey ‖ PutUserPolicy (setup.Attach) */
	if
	:: true -> iamCreateKey(mykey); kerr = aerr; iamPutPolicy(G0); perr = aerr
	:: true -> iamPutPolicy(G0); perr = aerr; iamCreateKey(mykey); kerr = aerr
	fi;
	if
	:: kerr == E_OK -> sgkey = mykey
	:: else
	fi;
	if
	:: kerr != E_OK || perr != E_OK -> goto compensate
	:: else
	fi;
	/* round 3: store the key, then commit the record (ready; the lease
	   released): readyRecord is this request's own record for a user it
	   created, the user's as IAM holds it for a repair */
	storeKey(mykey);
	if
	:: aerr != E_OK -> goto compensate
	:: else
	fi;
	stored = 1;
	nrq = (createdUser -> myrq : s_ureq);
	answering = 1;
	commit(R_READY, mykey, G0, nrq);
	answering = 0;
	if
	:: cerr != E_OK -> leaseLost = 1; goto compensate
	:: else
	fi;
	goto done;

compensate:
	/* rollback.go compensate: undo only holding the user (re-lease it at
	   the version last written) */
	if
	:: !leaseLost ->
		take(0, 0, hver);
		if
		:: lerr != E_OK -> leaseLost = 1
		:: else -> hdone = 0
		fi
	:: else
	fi;
	if
	:: leaseLost && stored -> goto done
	:: leaseLost && !stored -> createdUser = 0
	:: else
	fi;
	if
	:: createdUser -> ckeys = keys     /* ListAccessKeys */
	:: !createdUser && sgkey != 0 -> ckeys = KB(sgkey)
	:: else -> ckeys = 0
	fi;
	dk = ckeys; td = createdUser;
	deleteKeys();
	if
	:: createdUser -> iamDeletePolicy()
	:: else
	fi;
	ok = 1;
	if
	:: createdUser ->
		iamDeleteUser();
		if
		:: aerr != E_OK -> ok = 0
		:: else -> userDeleted = 1
		fi
	:: else
	fi;
	if
	:: createdUser && stored && ok -> smDelete()
	:: else
	fi;
	if
	:: leaseLost -> skip
	:: !leaseLost && createdUser && userDeleted -> hremove()
	:: else -> hrelease()
	fi;
	goto done;

done:
	hrelease();
dead:
	atomic {
		running[me] = 0; nreq--; RESET; me = 0;
		mayBeYoung = 0; createdUser = 0; stored = 0; committed = 0; leaseLost = 0; stepErr = 0; ok = 0; userDeleted = 0;
		sgkey = 0; ckeys = 0; nrq = 0
	}
}

/* a record the reaper writes keeps its grants (next := *h.rec), or, with
   FIX_RECONCILE, takes IAM's */
#ifdef FIX_RECONCILE
#define RECONCILE_GR s_gr
#else
#define RECONCILE_GR hgr
#endif

/* ---- rotate (rotate.go Rotate) ---- */

proctype Rotate(byte id) {
	LOCALS;
	atomic { me = id; mykey = id + 1; anskey = mykey; born = epoch; printf("p%d: rotate\n", me) };
	newHold();
	take(PB(R_READY), 0, 0);
	if
	:: lerr == E_NOTFOUND -> hrec = 0
	:: lerr != E_OK && lerr != E_NOTFOUND -> hdone = 1; goto done
	:: else
	fi;
	/* ownSecret ‖ load(allState) */
	snapshot();
	if
	:: !s_user -> goto done
	:: else
	fi;
	if
	:: s_sec != S_LIVE && !hrec && YOUNG(s_ucr, s_ubirth) -> goto done   /* young: in progress */
	:: s_sec != S_LIVE && !hrec && !YOUNG(s_ucr, s_ubirth) -> NONDET(young); if :: young -> goto done :: else fi
	:: else
	fi;
	adopt(0);
	if
	:: cerr != E_OK -> goto done
	:: else
	fi;
	cur = SKEY;
	/* deleteKeysExcept(current) */
	dk = s_keys & ~(cur != 0 -> KB(cur) : 0); td = 0;
	deleteKeys();
	iamCreateKey(mykey);
	if
	:: aerr != E_OK -> goto done
	:: else
	fi;
	putKey(mykey);
	if
	:: aerr != E_OK ->
		/* readSecret: the store may have happened after all */
		if
		:: sec == S_LIVE && skey == mykey -> skip
		:: else -> iamDeleteKey(mykey); goto done   /* compensate: the new key */
		fi
	:: else
	fi;
	CHECK(user && sec == S_LIVE, "p%d VIOLATED (a): after the store step, no user or no live secret\n");
	/* commit (next := *h.rec, the new key), then the old key goes; a
	   commit that fails keeps the old key, and the rotation answers
	   success all the same (the new key is in the secret) */
	answering = 1;
	commit(R_READY, mykey, hgr, hreq);
	ANSWER;
	if
	:: cerr == E_OK && cur != 0 -> iamDeleteKey(cur)
	:: else
	fi;
done:
	hrelease();
dead:
	atomic { running[me] = 0; nreq--; RESET; me = 0 }
}

/* ---- update (update.go UpdateGrants) ---- */
proctype Update(byte id; byte want) {
	LOCALS;
	atomic { me = id; born = epoch; printf("p%d: update to grants %d\n", me, want) };
	newHold();
	take(PB(R_READY), 0, 0);
	if
	:: lerr == E_NOTFOUND -> hrec = 0
	:: lerr != E_OK && lerr != E_NOTFOUND -> hdone = 1; goto done
	:: else
	fi;
	snapshot();    /* load(allState) */
	if
	:: !s_user -> goto done
	:: else
	fi;
	adopt(0);
	if
	:: cerr != E_OK -> goto done
	:: else
	fi;
	/* grants.Apply: one PutUserPolicy replacing the whole set */
	if
	:: s_gr != want ->
		iamPutPolicy(want);
		if
		:: aerr != E_OK -> goto done
		:: else
		fi
	:: else
	fi;
	if
	:: s_tag != want ->
		iamTagUser(want);
		if
		:: aerr != E_OK -> goto done
		:: else
		fi
	:: else
	fi;
	commit(hph, hkey, want, hreq);
done:
	hrelease();
dead:
	atomic { running[me] = 0; nreq--; RESET; me = 0 }
}

/* ---- delete (delete.go Delete) ---- */
proctype Delete(byte id) {
	LOCALS;
	atomic { me = id; born = epoch; printf("p%d: delete\n", me) };
	newHold();
	/* round 1: the lease (marking the user deleting) ‖ inventory */
	if
	:: true -> take(0, R_DELETING, 0); snapshot()
	:: true -> snapshot(); take(0, R_DELETING, 0)
	fi;
	if
	:: !s_user ->
		/* not found: finishGone when the lease was taken */
		if
		:: lerr == E_OK && hback == R_DELETING -> hback = 0; hremove()
		:: else
		fi;
		goto done   /* else the record goes back to its phase */
	:: else
	fi;
	if
	:: lerr == E_NOTFOUND -> hrec = 0
	:: lerr != E_OK && lerr != E_NOTFOUND -> hdone = 1; goto done   /* refused */
	:: else
	fi;
	adopt(R_DELETING);
	if
	:: cerr != E_OK -> goto done
	:: else
	fi;
	finishDelete();
	if
	:: perr != E_OK -> goto done   /* stays deleting */
	:: else
	fi;
	hremove();
done:
	hrelease();
dead:
	atomic { running[me] = 0; nreq--; RESET; me = 0 }
}

/* ---- the reaper (reap.go Reap, reapDue, restock; reconcile.go
   reconcileUser, reconcileRecords, reconcileSecrets) ----
   One run while requests are in flight (it may crash), then, at
   quiescence, two runs that do not, and the end-state checks. */
proctype Reaper(bool early) {
	LOCALS;
	byte runs, rv; bool busy, fromrr;
	atomic { me = RP1; mykey = RP1 + 1; anskey = mykey; born = epoch; running[me] = 1; printf("p%d: reaper (p%d at quiescence)\n", me, RP2) };
	/* the run while requests are in flight does one of its parts (or
	   none): each part's interleavings with the requests are covered,
	   not those of two parts of one run (the state space) */
	if
	:: early -> goto again
	:: early -> goto ru_start
	:: early -> goto rr_start
	:: early -> goto rs_start
	:: true -> goto quiesce
	fi;
again:
	/* reapDue: a record the expiry index gives (left creating or deleting) */
	newHold();
	if
	:: !rdue -> goto rd_end
	:: else
	fi;
rd_take:
	take(0, R_DELETING, 0);
	if
	:: lerr != E_OK -> hdone = 1; goto rd_end
	:: else
	fi;
	if
	:: hback == R_READY ->
		/* not due any more: written back as it is */
		commit(R_READY, hkey, hgr, hreq); goto rd_end
	:: else
	fi;
	if
	:: hback == R_CREATING ->
		snapshot();   /* readUserState; readUser */
		if
		:: s_user && SKEY != 0 -> akey = SKEY; commit(R_READY, akey, s_gr, s_ureq); goto rd_end
		:: else
		fi
	:: else
	fi;
	deprovision();   /* reapDelete */
rd_end:
	hrelease();
	if
	:: fromrr -> fromrr = 0; goto rr_end
	:: !fromrr && cancrash -> goto quiesce
	:: else
	fi;

	/* reconcileUser: the IAM user (ListUsers) */
ru_start:
	newHold();
	if
	:: !user -> goto ru_end
	:: else
	fi;
	if
	:: !cancrash -> old = 1
	:: cancrash && YOUNG(ucr, ubirth) -> old = 0
	:: cancrash && !YOUNG(ucr, ubirth) -> NONDET(old)
	fi;
	take(PB(R_READY), 0, 0);
	if
	:: lerr == E_NOTFOUND -> hrec = 0
	:: lerr != E_OK && lerr != E_NOTFOUND -> hdone = 1; goto ru_end
	:: else
	fi;
	if
	:: hrec && !old -> goto ru_end
	:: else
	fi;
	snapshot();    /* readUserState */
	if
	:: !s_user -> goto ru_end
	:: else
	fi;
	if
	:: !hrec ->
		if
		:: old && s_sec != S_LIVE -> goto halfmade
		:: !old && SKEY == 0 -> goto ru_end
		:: else ->
			/* adopted; a secret with no live key: recorded ready, to be restocked */
			if
			:: s_sec == S_LIVE && SKEY == 0 -> adopt(R_READY); hback = 0
			:: else -> adopt(0)
			fi;
			if
			:: cerr != E_OK -> goto ru_end
			:: else
			fi
		fi
	:: else
	fi;
	if
	:: s_sec != S_LIVE -> goto halfmade
	:: else
	fi;
	cur = SKEY;
	if
	:: cur != 0 && s_keys == KB(cur) ->
		if
		:: hclaimed -> commit(hph, hkey, hgr, hreq)
		:: !hclaimed && hkey != cur -> commit(R_READY, cur, RECONCILE_GR, hreq)   /* the key its secret holds */
#ifdef FIX_RECONCILE
		:: !hclaimed && hkey == cur && hgr != s_gr -> commit(R_READY, cur, s_gr, hreq)   /* the grants IAM holds */
#endif
		:: else
		fi;
		goto ru_end
	:: else
	fi;
	dk = s_keys & ~(cur != 0 -> KB(cur) : 0); td = 0;
	deleteKeys();
	if
	:: cur == 0 ->
		/* restock */
		iamCreateKey(mykey);
		if
		:: aerr != E_OK -> goto ru_end
		:: else
		fi;
		putKey(mykey);
		if
		:: aerr != E_OK -> iamDeleteKey(mykey); goto ru_end
		:: else
		fi;
		CHECK(user && sec == S_LIVE, "p%d VIOLATED (a): after the store step, no user or no live secret\n");
		commit(R_READY, mykey, RECONCILE_GR, hreq)
	:: else
	fi;
	goto ru_end;
halfmade:
	/* reapHalfMade: adopt (deleting), reapDelete */
	adopt(R_DELETING);
	if
	:: cerr != E_OK -> goto ru_end
	:: else
	fi;
	deprovision();
ru_end:
	hrelease();
	if
	:: cancrash -> goto quiesce
	:: else
	fi;

	/* reconcileRecords: a record left deleting (staleDeleting: to reapDue),
	   or a ready record whose user is gone */
rr_start:
	newHold();
	atomic { rv = rver; busy = (rholder != 0 && !crashed[rholder]); aph = rph; printf("p%d list records: phase %d\n", me, rph) };
	if
	:: !cancrash -> old = 1
	:: else -> NONDET(old)
	fi;
	if
	:: aph == R_DELETING && !busy && old -> fromrr = 1; goto rd_take
	:: else
	fi;
	if
	:: aph != R_READY || busy || !old || user -> goto rr_end
	:: else
	fi;
	take(0, R_DELETING, rv);
	if
	:: lerr != E_OK -> hdone = 1; goto rr_end
	:: else
	fi;
	deprovision();
rr_end:
	hrelease();
	if
	:: cancrash -> goto quiesce
	:: else
	fi;

rs_start:
	/* reconcileSecrets: a live secret, no record, no user: scheduled */
	atomic { d_sec = sec; k = scr; aph = sbirth; printf("p%d ListSecrets: secret %d\n", me, sec) };
	if
	:: !cancrash -> old = 1
	:: cancrash && YOUNG(k, aph) -> old = 0
	:: cancrash && !YOUNG(k, aph) -> NONDET(old)
	fi;
	if
	:: d_sec == S_LIVE && old && rph == R_ABSENT && !user ->
		printf("p%d GetItem, GetUser: no record, no user\n", me);
#ifdef FIX_ORPHAN
		/* hold the name while deleting its secret: claim a record
		   (deleting), check the user is still gone, then remove it */
		newHold();
		claim(R_DELETING, 0, 0, 0);
		if
		:: cerr == E_OK && !user -> smDelete(); hremove()
		:: cerr == E_OK && user -> hremove()
		:: else
		fi
#else
		smDelete()   /* no lease */
#endif
	:: else
	fi;

	if
	:: cancrash -> goto quiesce
	:: else
	fi;
	runs++;
	if
	:: runs < 2 -> goto again
	:: else -> goto check
	fi;

dead:
quiesce:
	atomic { running[me] = 0; RESET; rv = 0; busy = 0; fromrr = 0 };
	(nreq == 0);
	me = RP2; mykey = RP2 + 1; cancrash = 0;
	running[me] = 1;
	goto again;

check:
	printf("p%d quiescent: record phase %d key %d grants %d; user %d grants %d keys %d; secret %d key %d\n",
		me, rph, rkey, rgr, user, ugr, keys, sec, skey);
	CHECK(!(sec == S_LIVE && !user), "p%d VIOLATED (a): a live secret, no user\n");
	CHECK(keys == 0 || (sec == S_LIVE && keys == KB(skey)), "p%d VIOLATED (b): a key that is not the one in the live secret\n");
	CHECK(rph != R_READY || rgr == ugr, "p%d VIOLATED (c): the ready record's grants are not IAM's\n");
	/* (e) no record left creating or deleting; a ready one is its user's,
	   its key the one in the live secret */
	CHECK(rph == R_ABSENT || (rph == R_READY && user && sec == S_LIVE && rkey == skey), "p%d VIOLATED (e): a record left creating or deleting, or not its user's\n");
	running[me] = 0
}

/* (c) in every state: the grant set is one a request asked for */
#define GRANTS_OK ((ugr & (ugr - 1)) == 0)
/* (d') in every state (only with -DREADY_ALWAYS): a ready record nobody
   holds has a user whose live secret holds a key the user has */
#ifdef READY_ALWAYS
#define READY_OK (!(rph == R_READY && rholder == 0) || (user && sec == S_LIVE && (keys & KB(skey)) != 0))
#else
#define READY_OK true
#endif
/* (a) in every state: no live secret whose user is gone */
#define SECRET_OK (!(sec == S_LIVE && !user))
#define INV (GRANTS_OK && SECRET_OK && READY_OK)
active proctype Invariant() {
end:	atomic {
		!(INV) ->
		if
		:: !GRANTS_OK -> printf("p0 VIOLATED (c): grants %d, a set no request asked for\n", ugr)
		:: !SECRET_OK -> printf("p0 VIOLATED (a): a live secret, no user\n")
		:: else -> printf("p0 VIOLATED (d'): a ready record nobody holds without a live secret and key\n")
		fi;
		assert(INV)
	}
}

#define READY_USER \
	rph = R_READY; rver = 1; rkey = 1; rgr = G0; rreq = 1; \
	user = 1; ugr = G0; utag = G0; ureq = 1; keys = KB(1); \
	sec = S_LIVE; skey = 1

/* Scenarios: one is chosen at the start, so one run checks them all
   (-DONLY=n checks scenario n alone; 7 and 9 only so: too big for make
   test). Up to three requests each, and the reaper; "early": the reaper
   also runs while the requests are in flight. */
#ifdef ONLY
#define SC(n) (ONLY == n)
#else
#define SC(n) (n != 7 && n != 9)
#endif

init {
	atomic {
		nreq = 3; running[1] = 1; running[2] = 1; running[3] = 1;
		if
		:: SC(1) ->
			/* no user: the same create twice (one requester: a retry
			   or a twin) and a delete */
			run Create(1, 1); run Create(2, 1); run Delete(3); run Reaper(0)
		:: SC(2) ->
			/* no user: a create, a rotate and a delete */
			run Create(1, 1); run Rotate(2); run Delete(3); run Reaper(0)
		:: SC(3) ->
			/* a ready user (key 1 in its secret, grants G0): a rotate and
			   two updates; early reaper */
			READY_USER;
			run Rotate(1); run Update(2, G1); run Update(3, G2); run Reaper(1)
		:: SC(4) ->
			/* a ready user: a rotate, an update and a delete */
			READY_USER;
			run Rotate(1); run Update(2, G1); run Delete(3); run Reaper(0)
		:: SC(5) ->
			/* a ready user: a create (a replay), a rotate and a delete */
			READY_USER;
			run Create(1, 1); run Rotate(2); run Delete(3); run Reaper(0)
		:: SC(6) ->
			/* a ready user: a delete and a create; early reaper */
			READY_USER;
			nreq = 2; running[3] = 0;
			run Delete(1); run Create(2, 1); run Reaper(1)
		:: SC(7) ->
			/* no user: two creates, a rotate and a delete */
			nreq = 4; running[4] = 1;
			run Create(1, 1); run Create(2, 1); run Rotate(3); run Delete(4); run Reaper(0)
		:: SC(8) ->
			/* no user: creates of two requesters */
			nreq = 2; running[3] = 0;
			run Create(1, 1); run Create(2, 2); run Reaper(0)
		:: SC(9) ->
			/* no user: creates of two requesters and a delete */
			run Create(1, 1); run Create(2, 2); run Delete(3); run Reaper(0)
		fi
	}
}
